"""Simulated annealing: the temperature schedule and the acceptance rule of the authors' code."""

from __future__ import annotations

import math

import numpy as np


def temperature(flips: int, initial: float = 10.0, final: float = 0.01, cooling: float = 2.0) -> float:
    """T = max(T_min, T0 / (1 + cooling * ln(1 + flips))), ``flips`` = proposals accepted so far.

    The schedule of the authors' code (``get_temperature(..., schedule="log")`` on the accepted-flip count):
    it cools only when the search moves, so steps that change nothing do not freeze it.
    """
    if flips < 0:
        raise ValueError(f"the accepted-flip count cannot be negative, got {flips}")
    return max(final, initial / (1.0 + cooling * math.log1p(flips)))


def acceptance_probability(delta_u: float, t: float) -> float:
    """1 if U does not fall, else exp(dU / T)."""
    if delta_u >= 0:
        return 1.0
    return math.exp(delta_u / t)


def accept(delta_u: float, t: float, rng: np.random.Generator) -> bool:
    """Metropolis rule: always when U does not fall, else with probability exp(dU / T).

    Draws one uniform number in both cases, so the random stream does not depend on the outcome.
    """
    u = rng.random()
    return u < acceptance_probability(delta_u, t)
