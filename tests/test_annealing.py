"""The paper's temperature schedule and the Metropolis acceptance rule."""

import math

import numpy as np
import pytest

from icm_plugin.method.annealing import accept, acceptance_probability, temperature
from icm_plugin.method.search import ICMConfig


def test_schedule_cools_on_accepted_flips_as_the_authors_code():
    assert temperature(0) == pytest.approx(10.0)
    assert temperature(1) == pytest.approx(10.0 / (1 + 2 * math.log(2)))
    assert temperature(100) == pytest.approx(10.0 / (1 + 2 * math.log(101)))
    temps = [temperature(n) for n in range(0, 500)]
    assert all(a >= b for a, b in zip(temps, temps[1:], strict=False))


def test_schedule_floors_at_tmin():
    assert temperature(10**9, initial=10.0, final=1.0) == 1.0
    assert temperature(5, initial=0.001, final=0.01) == 0.01


def test_schedule_rejects_a_negative_count():
    with pytest.raises(ValueError):
        temperature(-1)


def test_acceptance_rule():
    assert acceptance_probability(0.5, 1.0) == 1.0
    assert acceptance_probability(0.0, 1.0) == 1.0
    assert acceptance_probability(-1.0, 2.0) == pytest.approx(math.exp(-0.5))
    assert acceptance_probability(-100.0, 0.01) == pytest.approx(0.0)


def test_accept_frequency_matches_probability():
    rng = np.random.default_rng(0)
    hits = sum(accept(-1.0, 1.0, rng) for _ in range(20000))
    assert hits / 20000 == pytest.approx(math.exp(-1.0), abs=0.01)
    assert all(accept(0.1, 0.01, rng) for _ in range(100))


def test_paper_defaults_in_one_place():
    cfg = ICMConfig()
    assert (cfg.alpha, cfg.cooling, cfg.num_seed, cfg.group_weight) == (50.0, 2.0, 8, 100.0)
    paper = ICMConfig.paper()
    assert (paper.initial_temperature, paper.final_temperature, paper.temperature_unit) == (10.0, 0.01, "U")
    # the default's temperature is per example: the same acceptance of a one-nat move at every pool size
    assert (cfg.initial_temperature, cfg.final_temperature, cfg.temperature_unit) == (1.0, 0.001, "example")
