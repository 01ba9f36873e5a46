"""ICMConfig: the hyperparameters of the ICM search (``icm_plugin.method.search``), in one place, validated."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from icm_plugin.errors import ICMError
from icm_plugin.method.objective import CONTEXTS, SCALES, Objective

PROPOSALS = ("group", "example")
STARTS = ("bootstrap", "seed")


@dataclass
class ICMConfig:
    """Hyperparameters, named and defaulted as in the paper and the authors' code, in one place.

    alpha: weight of mutual predictability in U = alpha * P - I.
    context: "group" (default): an example's demonstrations leave out its own consistency group; "loo": every
        other labelled example in one fixed order, the own group's at its group's place (the paper's setting, laid
        out as the authors' code). See ``icm_plugin.method.objective``.
    scale: "logodds" (default, the authors' code): P is the mean signed log-odds of the labels; "logprob":
        the mean log-probability of the labels (nats).
    proposal: "group" (default) or "example" (the paper): see the module docstring.
    normalise: "pool" (default): P divides the labelled examples' gain over chance by the pool size; "labelled":
        the mean over the labelled examples (the authors' code). See ``icm_plugin.method.objective``.
    initial_temperature, final_temperature, cooling: T = max(Tmin, T0 / (1 + cooling * ln(1 + flips))), flips =
        accepted steps the annealing rule judged (see always_add).
    temperature_unit: "example" (default): T0 and Tmin are in nats of ONE example's term, i.e. multiplied by
        alpha / n in units of U: a flip that changes one example's term by one nat changes U by alpha / n, so
        the acceptance of a move of a given size is the same at every pool size. "U": in units of U (the
        paper's T0 = 10, Tmin = 0.01).
    always_add: True (default): a step that only labels unlabelled examples is always taken and the annealing
        rule judges the steps that change labels: U compares labellings of the same examples, and the search
        must label the whole pool. The temperature then cools on those judged flips alone. False (the
        authors' code): every step is judged and every accepted one cools the temperature.
    start: "bootstrap" (default): the search starts from the model's own labels: every group gets its most
        likely rule-consistent labels with no demonstrations (zero-shot + rule), then up to ``bootstrap_rounds``
        rounds relabel every group at once from the current labels as demonstrations (the bootstrap baseline,
        under this search's own objective and layout); the annealing steps then change labels from there.
        "seed" (the paper): ``num_seed`` random examples get random balanced labels and the steps label the rest.
    bootstrap_rounds: most relabelling rounds of the "bootstrap" start (it stops early when no label changes).
    num_seed: K, examples given random balanced labels before the search starts (start "seed").
    iterations: at most this many steps; None means ``iterations_per_example`` (1) x pool size: about half the
        steps label the pool (a group each), the rest change labels; each new labelling costs one evaluation of
        the whole pool, so this keeps `--limit 64` near ten minutes on 2 CPU cores (the authors' code: 3000
        steps for 256 examples, about 12 per example). The search stops earlier at a fixed point.
    consistency_fix_steps: violations ConsistencyFix tries to repair per step (proposal "example").
    force_repair: True (default): a violation the step's own new label introduced is always repaired, with
        the best-U consistent assignment, and the annealing rule judges the repaired labelling against the
        labelling the step started from; every other repair is taken only if U does not fall. False:
        ConsistencyFix never lowers U (a model biased to one label then collapses the labelling).
    group_weight: sampling weight of an unlabelled example whose group is partly labelled (others: 1); with
        always_add, of every unlabelled example, so the search labels the pool first and then changes labels.
    orders: layouts of the prompts (group orders) whose log-probabilities are averaged (cost: this many times
        the token-forwards per evaluation).
    seed: seeds the initial labels, the group orders of the prompts, sampling and acceptance.
    """

    alpha: float = 50.0
    context: str = "group"
    scale: str = "logodds"
    proposal: str = "group"
    normalise: str = "pool"
    initial_temperature: float = 1.0
    final_temperature: float = 0.001
    cooling: float = 2.0
    temperature_unit: str = "example"
    always_add: bool = True
    start: str = "bootstrap"
    bootstrap_rounds: int = 3
    num_seed: int = 8
    iterations: int | None = None
    consistency_fix_steps: int = 10
    force_repair: bool = True
    group_weight: float = 100.0
    orders: int = 1
    seed: int = 0

    iterations_per_example: ClassVar[int] = 1

    def __post_init__(self):
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ICMError(f"alpha must be a positive number, got {self.alpha}")
        if self.context not in CONTEXTS:
            raise ICMError(f"unknown context {self.context!r}; choose one of {', '.join(CONTEXTS)}")
        if self.scale not in SCALES:
            raise ICMError(f"unknown scale {self.scale!r}; choose one of {', '.join(SCALES)}")
        if self.normalise not in ("pool", "labelled"):
            raise ICMError(f"unknown normalisation {self.normalise!r}; choose pool or labelled")
        if self.proposal not in PROPOSALS:
            raise ICMError(f"unknown proposal {self.proposal!r}; choose one of {', '.join(PROPOSALS)}")
        if self.iterations is not None and self.iterations < 1:
            raise ICMError(f"iterations must be at least 1, got {self.iterations}")
        if self.temperature_unit not in ("example", "U"):
            raise ICMError(f"unknown temperature unit {self.temperature_unit!r}; choose example or U")
        if not (self.initial_temperature > 0 and self.final_temperature > 0):
            raise ICMError("temperatures must be positive")
        if self.orders < 1:
            raise ICMError(f"orders must be at least 1, got {self.orders}")
        if self.start not in STARTS:
            raise ICMError(f"unknown start {self.start!r}; choose one of {', '.join(STARTS)}")
        if not (isinstance(self.bootstrap_rounds, int) and self.bootstrap_rounds >= 0):
            raise ICMError(f"bootstrap_rounds must be an integer >= 0, got {self.bootstrap_rounds!r}")
        if self.num_seed < 0:
            raise ICMError(f"num_seed cannot be negative, got {self.num_seed}")
        if not (math.isfinite(self.cooling) and self.cooling >= 0):
            raise ICMError(f"cooling must be a number >= 0, got {self.cooling}")
        if not (math.isfinite(self.group_weight) and self.group_weight > 0):
            raise ICMError(f"group_weight must be a positive number, got {self.group_weight}")
        if not (isinstance(self.consistency_fix_steps, int) and self.consistency_fix_steps >= 0):
            raise ICMError(f"consistency_fix_steps must be an integer >= 0, got {self.consistency_fix_steps!r}")
        if self.temperature_unit == "example" and self.normalise == "labelled":
            raise ICMError('temperature_unit "example" scales T by alpha / pool size, which is one example\'s weight '
                           'only under normalise "pool"; with normalise "labelled" use temperature_unit "U"')

    @classmethod
    def paper(cls, **overrides: Any) -> ICMConfig:
        """The paper's setting: own group shown, per-example proposals, signed log-odds (authors' code)."""
        return cls(**({"context": "loo", "proposal": "example", "scale": "logodds", "normalise": "labelled",
                       "always_add": False, "start": "seed",
                       "initial_temperature": 10.0,
                       "final_temperature": 0.01, "temperature_unit": "U"} | overrides))

    @property
    def objective(self) -> Objective:
        return Objective(alpha=self.alpha, context=self.context, scale=self.scale, normalise=self.normalise)
