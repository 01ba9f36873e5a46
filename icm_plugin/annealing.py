"""Simulated annealing: the temperature schedule and the acceptance rule of the paper."""

from __future__ import annotations

import math

import numpy as np


def temperature(n: int, initial: float = 10.0, final: float = 0.01, beta: float = 0.99) -> float:
    """T_n = max(T_min, T0 / (1 + beta * log n)) for iteration n >= 1 (T_1 = T0)."""
    if n < 1:
        raise ValueError(f"iterations count from 1, got {n}")
    return max(final, initial / (1.0 + beta * math.log(n)))


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
