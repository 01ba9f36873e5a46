"""The ICM search (Wen et al. 2025, Algorithm 1), scikit-learn style: configure once, ``fit`` a pool.

Each step samples an example (preferring unlabelled members of partly labelled groups), proposes the label
the model finds most likely given every other labelled example, repairs the violations that label
introduces (ConsistencyFix, which never lowers U), and accepts the result with the annealing rule.
The search never sees gold labels: ``fit`` strips them before anything else.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from icm_plugin.annealing import accept, temperature
from icm_plugin.checkpoint import check_resume, read_checkpoint, write_checkpoint
from icm_plugin.consistency import ConsistencyRule, Violation, make_rule
from icm_plugin.errors import ICMError
from icm_plugin.examples import Example
from icm_plugin.objective import Evaluation, context_request, evaluate
from icm_plugin.scoring.base import Scorer
from icm_plugin.tasks import Task

CHECKPOINT_VERSION = 1


@dataclass
class ICMConfig:
    """Hyperparameters, named and defaulted as in the paper.

    alpha: weight of mutual predictability in U = alpha * P - I (P is a mean log-probability, in nats).
    initial_temperature, final_temperature, beta: T_n = max(Tmin, T0 / (1 + beta * log n)).
    num_seed: K, examples given random (balanced) labels before the search starts.
    iterations: search steps; None means ``iterations_per_example`` x pool size.
    consistency_fix_steps: violations ConsistencyFix tries to repair per step.
    force_repair: True (default): a violation the step's own new label introduced is always repaired, with
        the best-U consistent assignment, and the annealing rule judges the repaired labelling against the
        labelling the step started from; every other repair is taken only if U does not fall. False:
        ConsistencyFix never lowers U at all, and a model biased to one label collapses the labelling (see
        README "The objective, as implemented").
    group_weight: sampling weight of an unlabelled example whose group is partly labelled (others: 1).
    seed: seeds the initial labels, the demonstration order, sampling and acceptance.
    """

    alpha: float = 50.0
    initial_temperature: float = 10.0
    final_temperature: float = 0.01
    beta: float = 0.99
    num_seed: int = 8
    iterations: int | None = None
    consistency_fix_steps: int = 10
    force_repair: bool = True
    group_weight: float = 100.0
    seed: int = 0

    iterations_per_example: ClassVar[int] = 3


Labels = list[int | None]


class ICM:
    """Internal Coherence Maximization over a pool of examples.

    After ``fit``: ``labels_`` (0/1 per example, pool order), ``confidence_`` (p of the assigned label given
    all others, from the final leave-one-out scores), ``U_``, ``mutual_predictability_``,
    ``inconsistencies_``, ``history_`` (one dict per step), ``conflicts_`` (every violation met and how it
    was resolved), ``n_iter_``, ``accepted_``, ``token_forwards_``, ``seconds_``.
    """

    def __init__(self, scorer: Scorer, task: Task, config: ICMConfig | None = None, rule: str | None = None):
        self.scorer = scorer
        self.task = task
        self.config = config or ICMConfig()
        self.rule = rule

    # ---- public -------------------------------------------------------------------------------------
    def fit(
        self,
        examples: Sequence[Example],
        clamped: dict[str, int] | None = None,
        checkpoint: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        on_step: Callable[[dict[str, Any]], None] | None = None,
        run_info: dict[str, Any] | None = None,
    ) -> ICM:
        """Search for the most coherent labelling of ``examples``.

        clamped: example id -> label the search must keep. checkpoint: file written after every step;
        with resume=True the search continues from it (same final labels as an uninterrupted run).
        run_info: what produced the run (task, model, scorer, rule, data; see ``icm_plugin.checkpoint``),
        recorded in the checkpoint and required to match on resume.
        Raises ICMError for unknown clamped ids or a checkpoint from another pool/config/run.
        """
        cfg = self.config
        pool = [e.without_gold() for e in examples]  # gold never reaches the search
        n = len(pool)
        if n == 0:
            raise ICMError("the pool is empty")
        self._pool = pool
        self._run_info = run_info
        self._rule: ConsistencyRule = make_rule(self.rule or self.task.rule_for(pool), pool)
        index = {e.id: i for i, e in enumerate(pool)}
        self._clamped: dict[int, int] = {}
        for ex_id, y in (clamped or {}).items():
            if ex_id not in index:
                raise ICMError(f"clamped label for id {ex_id!r}, which is not in the pool")
            self._clamped[index[ex_id]] = int(y)
        self._memo: OrderedDict[tuple, Evaluation] = OrderedDict()
        iterations = cfg.iterations if cfg.iterations is not None else cfg.iterations_per_example * n
        self.rule_name_ = self._rule.name
        start_forwards = self.scorer.token_forwards
        t_start = time.perf_counter()
        ckpt = Path(checkpoint) if checkpoint else None

        if resume and ckpt is not None and ckpt.exists():
            state = self._load_checkpoint(ckpt, pool)
        else:
            state = self._initial_state(n)
        rng: np.random.Generator = state.pop("rng")
        labels: Labels = state["labels"]
        cur: Evaluation = state["cur"]
        bar = _progress_bar(iterations, state["iteration"], progress)
        for it in range(state["iteration"] + 1, iterations + 1):
            step = self._step(it, rng, labels, cur)
            labels, cur = step.pop("labels"), step.pop("cur")
            state["history"].append(step)
            state["accepted"] += int(step["accepted"])
            state["iteration"] = it
            state["labels"], state["cur"] = labels, cur
            if ckpt is not None:
                self._save_checkpoint(ckpt, state, rng, start_forwards, t_start)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(U=f"{cur.U:.2f}", accepted=state["accepted"], inconsistent=cur.inconsistencies,
                                labelled=sum(y is not None for y in labels))
            if on_step is not None:
                on_step(step)
        if bar is not None:
            bar.close()
        labels, cur = self._complete(labels, cur, state)
        self.labels_ = [int(y) for y in labels]
        self.confidence_ = [float(np.exp(cur.logprobs[i][labels[i]])) if i in cur.logprobs else 0.5 for i in range(n)]
        self.U_ = cur.U
        self.mutual_predictability_ = cur.mutual_predictability
        self.inconsistencies_ = cur.inconsistencies
        self.final_violations_ = [self._violation_record(v, labels, labels, "unresolved", iterations)
                                  for v in self._rule.violations(labels)]
        self.history_ = state["history"]
        self.conflicts_ = state["conflicts"] + self.final_violations_
        self.n_iter_ = state["iteration"]
        self.accepted_ = state["accepted"]
        self.order_ = state["order"]
        self.token_forwards_ = state["token_forwards"] + self.scorer.token_forwards - start_forwards
        self.seconds_ = state["seconds"] + time.perf_counter() - t_start
        self.clamped_ = {pool[i].id: y for i, y in self._clamped.items()}
        return self

    # ---- steps --------------------------------------------------------------------------------------
    def _initial_state(self, n: int) -> dict[str, Any]:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        order = [int(i) for i in rng.permutation(n)]
        self._order = order
        labels: Labels = [None] * n
        for i, y in self._clamped.items():
            labels[i] = y
        free = [i for i in range(n) if i not in self._clamped]
        k = min(cfg.num_seed, len(free))
        seeds = [int(i) for i in rng.choice(free, size=k, replace=False)] if k else []
        init = np.array([1] * (k // 2) + [0] * (k - k // 2))  # balanced, as in the paper
        rng.shuffle(init)
        for i, y in zip(seeds, init, strict=True):
            labels[i] = int(y)
        cur = self._evaluate(labels)
        labels, cur, fixes = self._consistency_fix(labels, cur, touched=None, iteration=0)
        history = [{"iteration": 0, "example": None, "proposed": None, "accepted": True, "T": None,
                    "U": cur.U, "P": cur.mutual_predictability, "I": cur.inconsistencies,
                    "labelled": sum(y is not None for y in labels),
                    "changes": {str(i): y for i, y in enumerate(labels) if y is not None}}]
        self._conflicts = fixes
        return {"rng": rng, "labels": labels, "cur": cur, "iteration": 0, "order": order, "history": history,
                "conflicts": self._conflicts, "accepted": 0, "token_forwards": 0, "seconds": 0.0}

    def _step(self, it: int, rng: np.random.Generator, labels: Labels, cur: Evaluation) -> dict[str, Any]:
        t = temperature(it, self.config.initial_temperature, self.config.final_temperature, self.config.beta)
        i = self._sample(rng, labels)
        record: dict[str, Any] = {"iteration": it, "example": i, "T": t}
        if i is None:
            return record | {"proposed": None, "accepted": False, "U": cur.U, "P": cur.mutual_predictability,
                             "I": cur.inconsistencies, "labelled": _count(labels), "changes": {},
                             "labels": labels, "cur": cur}
        y = self._propose(i, labels, cur)
        record["proposed"] = y
        if labels[i] == y and not self._rule.violations(labels, {i}):
            rng.random()  # keep one draw per step so the stream is the same whatever happens
            return record | {"accepted": False, "U": cur.U, "P": cur.mutual_predictability,
                             "I": cur.inconsistencies, "labelled": _count(labels), "changes": {},
                             "labels": labels, "cur": cur}
        new = list(labels)
        new[i] = y  # (unchanged when the step only revisits a group left inconsistent earlier)
        # with forced repair, a proposal that breaks a rule is never kept, so its U is not needed
        skip = self.config.force_repair and bool(self._rule.violations(new, {i}))
        new_eval = None if skip else self._evaluate(new)
        proposal_u = None if new_eval is None else new_eval.U
        new, new_eval, fixes = self._consistency_fix(new, new_eval, touched={i}, iteration=it)
        ok = accept(new_eval.U - cur.U, t, rng)
        for f in fixes:
            f["step_accepted"] = ok
        self._conflicts.extend(fixes)
        if ok:
            changes = {str(j): new[j] for j in range(len(new)) if new[j] != labels[j]}
            labels, cur = new, new_eval
        else:
            changes = {}
        return record | {"accepted": ok, "U": cur.U, "P": cur.mutual_predictability, "I": cur.inconsistencies,
                         "proposal_U": proposal_u, "labelled": _count(labels), "changes": changes,
                         "labels": labels, "cur": cur}

    def _sample(self, rng: np.random.Generator, labels: Labels) -> int | None:
        """An example index, weighting unlabelled members of partly labelled groups by ``group_weight``."""
        n = len(labels)
        weights = np.ones(n)
        groups = self._rule.groups
        for members in groups.values():
            if any(labels[j] is not None for j in members):
                for j in members:
                    if labels[j] is None:
                        weights[j] = self.config.group_weight
        for j in self._clamped:
            weights[j] = 0.0
        total = weights.sum()
        if total == 0:
            rng.random()
            return None
        return int(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right").clip(0, n - 1))

    def _propose(self, i: int, labels: Labels, cur: Evaluation) -> int:
        """The label the model finds most likely for example i given every other labelled example."""
        if labels[i] is not None and i in cur.logprobs:
            lp = cur.logprobs[i]  # already scored with all others as context
        else:
            req = context_request(self.task, self._pool, labels, self._order, i)
            lp = self.scorer.label_logprobs([req])[0]
        return int(np.argmax(lp))

    def _consistency_fix(self, labels: Labels, cur: Evaluation | None, touched: set[int] | None, iteration: int):
        """Repair violations (those touching ``touched``, or all) while a repair does not lower U.

        For each violation, every assignment of its members that satisfies the rule (and keeps clamped
        labels) is scored; the best is applied only if its U is at least the current U (or, with
        ``force_repair``, always for a violation of the step's own example). Returns the new labels, their
        evaluation and one record per violation met.
        """
        records: list[dict[str, Any]] = []
        skipped: set[Violation] = set()
        first = min(touched) if touched else None  # the example whose new label started this fix
        for _ in range(self.config.consistency_fix_steps):
            found = self._rule.violations(labels) if touched is None else self._rule.violations(labels, touched)
            found = [v for v in found if v not in skipped]
            if not found:
                break
            v = found[0]
            options = [o for o in self._rule.repairs(v, labels)
                       if all(self._clamped.get(j, y) == y for j, y in o.items())
                       and any(labels[j] != y for j, y in o.items())]
            if not options:
                records.append(self._violation_record(v, labels, labels, "kept (clamped)", iteration))
                skipped.add(v)
                continue
            candidates = []
            for o in options:
                cand = list(labels)
                for j, y in o.items():
                    cand[j] = y
                candidates.append((cand, self._evaluate(cand)))
            best_labels, best_eval = max(candidates, key=lambda c: c[1].U)
            introduced = touched is not None and first is not None and first in v.members
            if cur is None or best_eval.U >= cur.U or (self.config.force_repair and introduced):
                records.append(self._violation_record(v, labels, best_labels, "repaired", iteration))
                labels, cur = best_labels, best_eval
                if touched is not None:
                    touched = touched | set(v.members)
            else:
                records.append(self._violation_record(v, labels, labels, "kept", iteration))
                skipped.add(v)
        if cur is None:  # nothing could be repaired (clamped members)
            cur = self._evaluate(labels)
        return labels, cur, records

    def _complete(self, labels: Labels, cur: Evaluation, state: dict[str, Any]):
        """Label whatever the search never reached (small budgets): propose, repair, keep."""
        for i in range(len(labels)):
            if labels[i] is not None:
                continue
            new = list(labels)
            new[i] = proposed = self._propose(i, labels, cur)
            skip = self.config.force_repair and bool(self._rule.violations(new, {i}))
            new_eval = None if skip else self._evaluate(new)
            new, new_eval, fixes = self._consistency_fix(new, new_eval, touched={i}, iteration=state["iteration"])
            state["conflicts"].extend(fixes)
            state["history"].append({"iteration": state["iteration"], "example": i, "proposed": proposed,
                                     "accepted": True, "completion": True, "T": None, "U": new_eval.U,
                                     "P": new_eval.mutual_predictability, "I": new_eval.inconsistencies,
                                     "labelled": _count(new),
                                     "changes": {str(j): new[j] for j in range(len(new)) if new[j] != labels[j]}})
            labels, cur = new, new_eval
        return labels, cur

    # ---- helpers ------------------------------------------------------------------------------------
    def _evaluate(self, labels: Labels) -> Evaluation:
        key = tuple(labels)
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            return hit
        ev = evaluate(self.scorer, self.task, self._rule, self._pool, labels, self._order, self.config.alpha)
        self._memo[key] = ev
        if len(self._memo) > 512:
            self._memo.popitem(last=False)
        return ev

    def _violation_record(self, v: Violation, before: Labels, after: Labels, resolution: str, iteration: int):
        ids = [self._pool[j].id for j in v.members]
        return {"iteration": iteration, "rule": v.rule, "ids": ids,
                "labels_before": {self._pool[j].id: before[j] for j in v.members},
                "labels_after": {self._pool[j].id: after[j] for j in v.members},
                "resolution": resolution}

    # ---- checkpoint ---------------------------------------------------------------------------------
    def _save_checkpoint(self, path: Path, state: dict[str, Any], rng: np.random.Generator,
                         start_forwards: int, t_start: float) -> None:
        cur: Evaluation = state["cur"]
        blob = {
            "version": CHECKPOINT_VERSION,
            "config": asdict(self.config),
            "ids": [e.id for e in self._pool],
            "clamped": {self._pool[i].id: y for i, y in self._clamped.items()},
            "order": state["order"],
            "iteration": state["iteration"],
            "labels": state["labels"],
            "rng": rng.bit_generator.state,
            "cur": {"U": cur.U, "P": cur.mutual_predictability, "I": cur.inconsistencies,
                    "logprobs": {str(i): v.tolist() for i, v in cur.logprobs.items()}},
            "history": state["history"],
            "conflicts": state["conflicts"],
            "accepted": state["accepted"],
            "token_forwards": state["token_forwards"] + self.scorer.token_forwards - start_forwards,
            "seconds": state["seconds"] + time.perf_counter() - t_start,
        }
        if self._run_info is not None:
            blob["run"] = self._run_info
        write_checkpoint(path, blob)  # atomic: a kill leaves the old or the new checkpoint, never half of one

    def _load_checkpoint(self, path: Path, pool: list[Example]) -> dict[str, Any]:
        blob = read_checkpoint(path, CHECKPOINT_VERSION)
        check_resume(blob, path, [e.id for e in pool], asdict(self.config),
                     {pool[i].id: y for i, y in self._clamped.items()}, self._run_info)
        rng = np.random.default_rng()
        rng.bit_generator.state = blob["rng"]
        self._order = blob["order"]
        c = blob["cur"]
        cur = Evaluation(c["U"], c["P"], c["I"], {int(i): np.asarray(v) for i, v in c["logprobs"].items()})
        self._memo[tuple(blob["labels"])] = cur
        self._conflicts = blob["conflicts"]
        return {"rng": rng, "labels": blob["labels"], "cur": cur, "iteration": blob["iteration"],
                "order": blob["order"], "history": blob["history"], "conflicts": blob["conflicts"],
                "accepted": blob["accepted"], "token_forwards": blob["token_forwards"], "seconds": blob["seconds"]}


def _count(labels: Labels) -> int:
    return sum(y is not None for y in labels)


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="ICM search", unit="step")
