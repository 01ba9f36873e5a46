"""The ICM search (Wen et al. 2025, Algorithm 1), scikit-learn style: configure once, ``fit`` a pool.

The search starts from the model's own labels (``ICMConfig.start="bootstrap"``, the default: zero-shot + rule,
then bootstrap rounds that relabel every group at once) or, as in the paper (``"seed"``), from a few random
labels. Each step samples an example, proposes the labels the model finds most likely for it, repairs what they
break and accepts the result by simulated annealing. Proposals (``ICMConfig.proposal``, ``icm_plugin.method.proposals``):

- ``"group"`` (default): the most likely rule-consistent assignment of the sampled example's consistency group
  by the members' own scores; with the own group hidden from its prompts this is exact for the group's part of
  P and costs no model call. With ``always_add`` a partly labelled group keeps its labelled members.
- ``"example"`` (the paper): the example's most likely label; a violation it introduces is repaired with the
  best-U consistent assignment (ConsistencyFix), then the annealing rule judges the result.

Every evaluation scores the whole pool (``icm_plugin.method.objective``), so proposals are free, and only examples
whose proposal would change something ("active") are drawn, with the paper's weights: the paper's chain
without its no-op steps (the temperature cools on accepted flips, so they never mattered). With no active
example the labelling is a fixed point and the search stops. Evaluations are memoised. The result is the
best fully labelled labelling visited. The search never sees gold labels: ``fit`` strips them first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from icm_plugin.core.examples import Example, Groups, canonical_order
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError
from icm_plugin.method.annealing import accept, temperature
from icm_plugin.method.checkpoint import (
    SearchState,
    check_resume,
    check_search,
    read_checkpoint,
    read_memo,
    write_checkpoint,
    write_memo,
)
from icm_plugin.method.consistency import ConsistencyRule, Violation, make_rule
from icm_plugin.method.icm_config import PROPOSALS, ICMConfig
from icm_plugin.method.objective import Evaluation, evaluate
from icm_plugin.method.proposals import PROPOSERS, best_assignment
from icm_plugin.method.repair import consistency_fix
from icm_plugin.scoring.base import Scorer

__all__ = ["CHECKPOINT_VERSION", "ICM", "PROPOSALS", "ICMConfig"]

CHECKPOINT_VERSION = 3  # 3: the pool is searched in its canonical order (icm_plugin.core.examples.canonical_order)


Labels = list[int | None]


class ICM:
    """Internal Coherence Maximization over a pool of examples.

    After ``fit``: ``labels_`` (label index per example, pool order), ``confidence_`` (p of the label given
    the demonstrations of the final evaluation), ``U_``, ``mutual_predictability_``, ``inconsistencies_``,
    ``history_`` (one dict per step), ``conflicts_`` (every violation met and how it was resolved),
    ``n_iter_``, ``accepted_``, ``converged_`` (stopped at a fixed point), ``evaluations_``,
    ``token_forwards_``, ``seconds_``, ``group_orders_``, ``zero_shot_scores_`` (log p of each label with no
    demonstrations, shape (n, k), when the search scored the pool with nothing labelled - the default start
    without clamps - else None: asking the model once comes free with the start).
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
        run_info: what produced the run (task, model, scorer, rule, data; see ``icm_plugin.method.checkpoint``),
        recorded in the checkpoint and required to match on resume.
        Raises ICMError for unknown clamped ids or a checkpoint from another pool/config/run.
        """
        cfg = self.config
        # the search works on the pool in an order drawn from the seed and the ids, never the file's: the same
        # records in any order give the same labels (TruthfulQA and GSM8K files list the true candidate first)
        self._order = canonical_order(examples, cfg.seed)
        pool = [examples[p].without_gold() for p in self._order]  # gold never reaches the search
        n = len(pool)
        if n == 0:
            raise ICMError("the pool is empty")
        self._run_info = run_info
        self._prepare(pool, clamped)
        iterations = self._iterations = cfg.iterations if cfg.iterations is not None else cfg.iterations_per_example * n
        start_forwards = self.scorer.token_forwards
        t_start = time.perf_counter()
        ckpt = Path(checkpoint) if checkpoint else None

        if resume and ckpt is not None and ckpt.exists():
            state, rng = self._load_checkpoint(ckpt)
        else:
            state, rng = self._initial_state(n)
        bar = _progress_bar(iterations, state.iteration, progress)
        while state.iteration < iterations and not state.converged:
            step = self._step(it := state.iteration + 1, rng, state)
            state.history.append(step)
            state.iteration = it
            if ckpt is not None:
                self._save_checkpoint(ckpt, state, rng, start_forwards, t_start)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(U=f"{state.cur.U:.2f}", accepted=state.accepted,
                                inconsistent=state.cur.inconsistencies, labelled=_count(state.labels))
            if on_step is not None:
                on_step(step)
        if bar is not None:
            bar.close()
        labels, cur = self._finish(state)
        self.labels_ = self._to_input([int(y) for y in labels])
        self.confidence_ = self._to_input([float(np.exp(cur.logprobs[i][labels[i]])) for i in range(n)])
        blank = self._memo.get((None,) * n)  # the evaluation with nothing labelled: every prompt without demos
        self.zero_shot_scores_ = (None if blank is None
                                  else np.array(self._to_input([blank.logprobs[i] for i in range(n)])))
        self.U_ = cur.U
        self.mutual_predictability_ = cur.mutual_predictability
        self.inconsistencies_ = cur.inconsistencies
        self.final_violations_ = [self._violation_record(v, labels, labels, "unresolved", state.iteration)
                                  for v in self._rule.violations(labels)]
        self.history_ = [self._history_to_input(h) for h in state.history]
        self.conflicts_ = state.conflicts + self.final_violations_
        self.n_iter_ = state.iteration
        self.accepted_ = state.accepted
        self.converged_ = state.converged
        self.evaluations_ = state.evaluations + self._evaluations
        self.group_orders_ = [list(o) for o in self._group_orders]
        self.token_forwards_ = state.token_forwards + self.scorer.token_forwards - start_forwards
        self.seconds_ = state.seconds + time.perf_counter() - t_start
        self.clamped_ = {pool[i].id: y for i, y in self._clamped.items()}
        return self

    def evaluate(self, labels: Sequence[int | None]) -> Evaluation:
        """U and its parts for ``labels`` of the fitted pool (in the order ``fit`` was given it), under this
        search's objective and layout; ``logprobs`` are keyed by that order too."""
        ev = self._evaluate([labels[p] for p in self._order])
        return Evaluation(ev.U, ev.mutual_predictability, ev.inconsistencies,
                          {self._order[i]: lp for i, lp in ev.logprobs.items()})

    # ---- the caller's order -------------------------------------------------------------------------
    def _to_input(self, values: list) -> list:
        """Values per example of the search's order, put back in the order ``fit`` was given the pool."""
        out: list = [None] * len(values)
        for k, p in enumerate(self._order):
            out[p] = values[k]
        return out

    def _history_to_input(self, record: dict[str, Any]) -> dict[str, Any]:
        """A history record with its example indices in the caller's order."""
        out = dict(record)
        if out.get("example") is not None:
            out["example"] = self._order[out["example"]]
        if "changes" in out:
            out["changes"] = {str(self._order[int(i)]): y for i, y in out["changes"].items()}
        return out

    # ---- set-up -------------------------------------------------------------------------------------
    def _prepare(self, pool: list[Example], clamped: dict[str, int] | None) -> None:
        cfg = self.config
        if len(getattr(self, "_order", ())) != len(pool):  # called without fit (tests): the pool's own order
            self._order = list(range(len(pool)))
        self._pool = pool
        self._proposer = PROPOSERS[cfg.proposal]()
        self._objective = cfg.objective
        self._k, true = len(self.task.label_words), getattr(self.task, "true_index", 1)
        self._groups = Groups(pool)  # the one view of the pool's groups: rule, layout, proposals
        self._rule: ConsistencyRule = make_rule(self.rule or self.task.rule_for(pool), pool, self._k, true,
                                                self._groups)
        self.rule_name_ = self._rule.name
        index = {e.id: i for i, e in enumerate(pool)}
        self._clamped: dict[int, int] = {}
        for ex_id, y in (clamped or {}).items():
            if ex_id not in index:
                raise ICMError(f"clamped label for id {ex_id!r}, which is not in the pool")
            self._clamped[index[ex_id]] = int(y)
        self._memo: OrderedDict[tuple, Evaluation] = OrderedDict()
        self._evaluations = 0
        self._unit = cfg.alpha / len(pool) if cfg.temperature_unit == "example" else 1.0  # T in units of U
        # the prompt layouts: fixed orders of the groups for the whole search
        groups = sorted(self._groups.members)
        self._group_orders = [[groups[k] for k in np.random.default_rng([cfg.seed, 1 + r]).permutation(len(groups))]
                              for r in range(cfg.orders)]

    def _initial_state(self, n: int) -> tuple[SearchState, np.random.Generator]:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        labels: Labels = [None] * n
        for i, y in self._clamped.items():
            labels[i] = y
        if cfg.start == "bootstrap":
            return self._bootstrap_start(labels), rng
        free = [i for i in range(n) if i not in self._clamped]
        k = min(cfg.num_seed, len(free))
        seeds = [int(i) for i in rng.choice(free, size=k, replace=False)] if k else []
        init = np.array([1] * (k // 2) + [0] * (k - k // 2)) if self._k == 2 else np.arange(k) % self._k  # balanced
        if k % self._k:  # an uneven remainder goes to labels drawn at random, not always the lowest
            init = (init + int(rng.integers(self._k))) % self._k
        rng.shuffle(init)
        for i, y in zip(seeds, init, strict=True):
            labels[i] = int(y)
        cur = self._evaluate(labels)
        labels, cur, fixes = self._consistency_fix(labels, cur, touched=None, iteration=0)
        history = [self._record(0, labels, cur, {str(i): y for i, y in enumerate(labels) if y is not None})]
        state = SearchState(labels, cur, history=history, conflicts=fixes)
        state.note_best()
        return state, rng

    def _bootstrap_start(self, labels: Labels) -> SearchState:
        """The model's own labels: every group's proposal from an evaluation with no labels (zero-shot + rule),
        then rounds that relabel every group at once from the current labels (bootstrap), until none changes.
        The steps go on from the round with the highest U."""
        cur = self._evaluate(labels)
        state = SearchState(list(labels), cur)
        for r in range(self.config.bootstrap_rounds + 1):  # round 0: zero-shot + rule
            new = list(labels)
            for members in self._groups.members.values():
                for j, y in self._best_assignment(members, labels, cur).items():
                    new[j] = y
            changes = {str(i): y for i, y in enumerate(new) if y != labels[i]}
            if not changes:
                break
            labels, cur = new, self._evaluate(new)
            state.labels, state.cur = labels, cur
            state.note_best()
            state.history.append(self._record(0, labels, cur, changes, start="zero-shot + rule" if r == 0
                                              else f"bootstrap round {r}"))
        if not state.history:  # every example clamped
            state.history.append(self._record(0, labels, cur, {}, start="clamped"))
        if state.best is not None and state.best["U"] > state.cur.U:  # a round lowered U: go on from the best
            state.labels = list(state.best["labels"])
            state.cur = self._evaluate(state.labels)
        return state

    @staticmethod
    def _record(it: int, labels: Labels, cur: Evaluation, changes: dict[str, int], **extra: Any) -> dict[str, Any]:
        return {"iteration": it, "example": None, "proposed": None, "accepted": True, "T": None, **extra,
                "U": cur.U, "P": cur.mutual_predictability, "I": cur.inconsistencies, "labelled": _count(labels),
                "changes": changes}

    # ---- steps --------------------------------------------------------------------------------------
    def _step(self, it: int, rng: np.random.Generator, state: SearchState) -> dict[str, Any]:
        cfg = self.config
        labels, cur = state.labels, state.cur
        u_before = cur.U
        t = self._unit * temperature(state.flips, cfg.initial_temperature, cfg.final_temperature, cfg.cooling)
        proposals = self._proposer.active(self, labels, cur)
        i = self._sample(rng, labels, proposals)
        record: dict[str, Any] = {"iteration": it, "example": i, "T": t}
        if i is None:  # a fixed point: no proposal would change anything
            state.converged = True
            return record | {"proposed": None, "accepted": False, "U": cur.U, "P": cur.mutual_predictability,
                             "I": cur.inconsistencies, "labelled": _count(labels), "changes": {}}
        new, new_eval, fixes, fields = self._proposer.step(self, i, labels, cur, proposals[i], it)
        record |= fields
        judged = not (cfg.always_add and all(labels[j] is None for j in range(len(new)) if new[j] != labels[j]))
        ok = accept(new_eval.U - cur.U, t, rng) or not judged
        record["judged"] = judged
        for f in fixes:
            f["step_accepted"] = ok
        state.conflicts.extend(fixes)
        changes = {str(j): new[j] for j in range(len(new)) if new[j] != labels[j]} if ok else {}
        if ok:
            state.labels, state.cur = new, new_eval
            state.accepted += 1
            state.flips += int(judged)
            state.note_best()
        cur = state.cur
        return record | {"accepted": ok, "dU": new_eval.U - u_before,
                         "U": cur.U, "P": cur.mutual_predictability, "I": cur.inconsistencies,
                         "labelled": _count(state.labels), "changes": changes}

    def _proposals(self, labels: Labels, cur: Evaluation) -> dict[int, dict[int, int]]:
        """For every active example: the labels its step would propose (example index -> label)."""
        return self._proposer.active(self, labels, cur)

    def _best_assignment(self, members: list[int], labels: Labels, cur: Evaluation,
                         keep_labelled: bool = False) -> dict[int, int]:
        fixed = self._clamped
        if keep_labelled:
            fixed = fixed | {j: labels[j] for j in members if labels[j] is not None}
        return best_assignment(self._rule, members, labels, cur.logprobs, fixed, self._objective.term)

    def _sample(self, rng: np.random.Generator, labels: Labels, proposals: dict[int, Any]) -> int | None:
        """An active example, weighting unlabelled members of partly labelled groups by ``group_weight`` (with
        ``always_add``: every unlabelled example).

        Draws one uniform number whatever happens, so the random stream does not depend on the outcome.
        """
        u = rng.random()
        active = sorted(proposals)
        if not active:
            return None
        weights = np.ones(len(active))
        for k, j in enumerate(active):
            # with always_add every unlabelled example comes first: the pool is labelled before labels change
            if labels[j] is None and (self.config.always_add
                                      or any(labels[m] is not None for m in self._groups.of(j))):
                weights[k] = self.config.group_weight
        return active[int(np.searchsorted(np.cumsum(weights), u * weights.sum(), side="right").clip(0, len(active) - 1))]

    def _consistency_fix(self, labels: Labels, cur: Evaluation | None, touched: set[int] | None, iteration: int,
                         before: set[Violation] | None = None):
        """``repair.consistency_fix`` under this search's rule, clamps and budget (records name the iteration)."""
        return consistency_fix(self._rule, labels, cur, self._evaluate, self._clamped, self.config.consistency_fix_steps,
                               lambda v, a, b, r: self._violation_record(v, a, b, r, iteration), touched, before)

    def _finish(self, state: SearchState) -> tuple[Labels, Evaluation]:
        """The best fully labelled labelling visited. A search cut short first completes its labelling: each
        group with unlabelled members gets its proposal (small budgets)."""
        labels, cur = state.labels, state.cur
        if _count(labels) < len(labels):
            new = list(labels)
            for members in self._groups.members.values():
                if any(new[j] is None for j in members):
                    for j, y in self._best_assignment(members, labels, cur, keep_labelled=True).items():
                        new[j] = y
            changes = {str(j): new[j] for j in range(len(new)) if new[j] != labels[j]}
            state.labels, state.cur = new, self._evaluate(new)
            state.history.append(self._record(state.iteration, new, state.cur, changes, completion=True))
            state.note_best()
        return state.best["labels"], self._evaluate(state.best["labels"])

    # ---- helpers ------------------------------------------------------------------------------------
    def _evaluate(self, labels: Labels) -> Evaluation:
        key = tuple(labels)
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            return hit
        ev = evaluate(self.scorer, self.task, self._rule, self._pool, labels, self._group_orders, self._objective,
                      self._groups)
        self._evaluations += 1
        self._memo[key] = ev
        if len(self._memo) > 512:
            self._memo.popitem(last=False)
        return ev

    def _violation_record(self, v: Violation, before: Labels, after, resolution: str, iteration: int):
        after = after if isinstance(after, dict) else {j: after[j] for j in v.members}
        ids = [self._pool[j].id for j in v.members]
        return {"iteration": iteration, "rule": v.rule, "ids": ids,
                "labels_before": {self._pool[j].id: before[j] for j in v.members},
                "labels_after": {self._pool[j].id: after.get(j) for j in v.members},
                "resolution": resolution}

    # ---- checkpoint ---------------------------------------------------------------------------------
    def _save_checkpoint(self, path: Path, state: SearchState, rng: np.random.Generator,
                         start_forwards: int, t_start: float) -> None:
        blob = {"version": CHECKPOINT_VERSION, "config": asdict(self.config), "ids": [e.id for e in self._pool],
                "clamped": {self._pool[i].id: y for i, y in self._clamped.items()},
                "group_orders": self._group_orders, "rng": rng.bit_generator.state}
        blob |= state.to_blob(state.evaluations + self._evaluations,
                              state.token_forwards + self.scorer.token_forwards - start_forwards,
                              state.seconds + time.perf_counter() - t_start)
        if self._run_info is not None:
            blob["run"] = self._run_info
        blob["search"] = {"rule": self._rule.name, "iterations": self._iterations}
        write_memo(path, self._memo, state.iteration)  # first: a kill in between leaves a memo of another step
        write_checkpoint(path, blob)  # atomic: a kill leaves the old or the new checkpoint, never half of one

    def _load_checkpoint(self, path: Path) -> tuple[SearchState, np.random.Generator]:
        blob = read_checkpoint(path, CHECKPOINT_VERSION)
        pool = self._pool
        check_resume(blob, path, [e.id for e in pool], asdict(self.config),
                     {pool[i].id: y for i, y in self._clamped.items()}, self._run_info)
        rng = np.random.default_rng()
        rng.bit_generator.state = blob["rng"]
        check_search(blob, path, {"rule": self._rule.name, "iterations": self._iterations})
        self._group_orders = blob["group_orders"]
        state = SearchState.from_blob(blob)
        self._memo = read_memo(path, blob["iteration"]) or OrderedDict({tuple(blob["labels"]): state.cur})
        return state, rng


def _count(labels: Labels) -> int:
    return sum(y is not None for y in labels)


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="ICM search", unit="step")
