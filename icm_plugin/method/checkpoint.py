"""The search's checkpoint file: written atomically, read back with every check a resume needs.

``ICM.fit`` writes ``checkpoint.json`` after every step (``icm_plugin.method.search``); ``icm label --resume``
continues from it. A checkpoint may only be resumed by the command that would have written it: the same pool
(example ids), hyperparameters, clamped labels and run (task, model, scorer, dtype, rule, data). Anything else, and
any file that is not a whole checkpoint, is one ICMError naming the file, what differs (the flag, both values)
and the fix. The run layer checks this before it writes anything or loads the model; ``ICM`` checks it again
when it loads the state.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icm_plugin.core.writers import json_text
from icm_plugin.errors import ICMError
from icm_plugin.method.objective import Evaluation

#: keys every checkpoint holds (``run`` is newer: checkpoints written before it are resumed without that check)
REQUIRED_KEYS = ("version", "config", "ids", "clamped", "group_orders", "iteration", "labels", "rng", "cur", "best",
                 "history", "conflicts", "accepted", "flips", "converged", "evaluations", "token_forwards", "seconds")
_TYPES = {"config": dict, "ids": list, "clamped": dict, "group_orders": list, "iteration": int, "labels": list,
          "rng": dict, "cur": dict, "history": list, "conflicts": list, "flips": int, "converged": bool}
#: the search state stored as it is (the rest: labels of the current evaluation, counters, the random state)
STATE_KEYS = ("iteration", "labels", "best", "history", "conflicts", "accepted", "flips", "converged")
#: run facts recorded in the checkpoint, with the flag that sets each
RUN_FLAGS = {"task": "--task", "data": "--data", "model": "--model", "model_type": "--model-type",
             "model_args": "--model-args", "scorer": "--scorer", "dtype": "--dtype", "rule": "--rule"}
#: hyperparameters a user sets by flag; the others are named as hyperparameters
CONFIG_FLAGS = {"alpha": "--alpha", "seed": "--seed", "iterations": "--iterations", "force_repair": "--force-repair",
                "context": "--context", "scale": "--scale", "orders": "--orders"}


@dataclass
class SearchState:
    """What one ICM search step reads and changes, and what its checkpoint keeps of it (one place for the
    checkpoint's keys and types). Indices are of the search's own order of the pool.

    ``evaluations``, ``token_forwards`` and ``seconds`` count what earlier processes of a resumed run spent;
    ``best`` is the best fully labelled labelling visited (``{"U", "labels", "iteration"}``)."""

    labels: list[int | None]
    cur: Evaluation
    iteration: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    flips: int = 0
    converged: bool = False
    best: dict[str, Any] | None = None
    evaluations: int = 0
    token_forwards: int = 0
    seconds: float = 0.0

    def note_best(self) -> None:
        """Keep the current labelling as the best when it is complete and beats the best so far."""
        if all(y is not None for y in self.labels) and (self.best is None or self.cur.U > self.best["U"]):
            self.best = {"U": self.cur.U, "labels": list(self.labels), "iteration": self.iteration}

    def to_blob(self, evaluations: int, token_forwards: int, seconds: float) -> dict[str, Any]:
        """The checkpoint's state keys, with the totals so far (this process's included)."""
        return {k: getattr(self, k) for k in STATE_KEYS} | {
            "cur": evaluation_blob(self.cur), "evaluations": evaluations, "token_forwards": token_forwards,
            "seconds": seconds}

    @classmethod
    def from_blob(cls, blob: dict[str, Any]) -> SearchState:
        """The state a checkpoint (``read_checkpoint``) holds."""
        return cls(cur=evaluation_from_blob(blob["cur"]),
                   **{k: blob[k] for k in (*STATE_KEYS, "evaluations", "token_forwards", "seconds")})


def read_checkpoint(path: str | Path, version: int) -> dict[str, Any]:
    """The checkpoint at ``path`` as a dict with every required key.

    Raises ICMError (naming the file and the fix) for a file that cannot be read, is not UTF-8 JSON, is not a
    JSON object, lacks a key, holds a value of the wrong type or has another version.
    """
    path = Path(path)
    fix = f"delete {path} to start over, or choose another --out"
    try:
        blob = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ICMError(f"{path}: not a checkpoint (binary, not UTF-8 JSON); {fix}") from None
    except json.JSONDecodeError as err:
        raise ICMError(f"{path}: checkpoint is not valid JSON ({err.msg}); delete it to start over") from None
    except OSError as err:
        raise ICMError(f"{path}: cannot read the checkpoint ({err.strerror}); {fix}") from None
    if not isinstance(blob, dict):
        raise ICMError(f"{path}: not a checkpoint (a JSON {type(blob).__name__}, expected an object); {fix}")
    if blob.get("version") != version:
        raise ICMError(f"{path}: checkpoint version {blob.get('version')} is not {version}; delete it")
    for key in REQUIRED_KEYS:
        if key not in blob:
            raise ICMError(f"{path}: checkpoint lacks the key {key!r} (not written by `icm label`, or damaged); {fix}")
    for key, kind in _TYPES.items():
        if not isinstance(blob[key], kind):
            raise ICMError(f"{path}: checkpoint key {key!r} holds a {type(blob[key]).__name__}, expected a "
                           f"{kind.__name__}; {fix}")
    return blob


def check_resume(blob: dict[str, Any], path: str | Path, ids: list[str], config: dict[str, Any],
                 clamped: dict[str, int], run: dict[str, Any] | None = None) -> None:
    """Refuse to resume ``blob`` with another pool, run, hyperparameters or clamped labels.

    ``ids``: the pool's example ids in order; ``config``: ``asdict(ICMConfig)``; ``clamped``: id -> label;
    ``run``: the run facts of ``RUN_FLAGS`` (None: not checked). Raises ICMError naming the first setting that
    differs, with the checkpoint's value and this command's.
    """
    where = f"{path}: cannot resume"
    fix = "resume with the same settings, or choose another --out (the run folder is left as it is)"
    # the order is drawn from the seed (``canonical_order``): another order is another seed, named below
    if sorted(blob["ids"]) != sorted(ids):
        old, new = blob["ids"], list(ids)
        extra = next((i for i in new if i not in set(old)), None)
        detail = (f"example id {extra!r} is not in it" if extra is not None else
                  f"it has {len(old)} examples, this pool {len(new)}" if len(old) != len(new) else "another order")
        raise ICMError(f"{where}: it was made for a different pool ({detail}); pass the same --data and --limit, or "
                       "choose another --out (the run folder is left as it is)")
    saved_run = blob.get("run")
    if run is not None and isinstance(saved_run, dict):
        for key, flag in RUN_FLAGS.items():  # a key an older checkpoint lacks was not recorded: not checked
            if key in saved_run and saved_run[key] != run.get(key):
                hint = (f" (--dtype auto follows this machine's CPU: pass --dtype {saved_run[key]} to resume as "
                        "the run was made)" if key == "dtype" and saved_run[key] else "")
                raise ICMError(f"{where}: it was made with {flag} {_show(saved_run[key])}, this command has "
                               f"{_show(run.get(key))}{hint}; {fix}")
    saved_config = blob["config"]
    for key in sorted(set(saved_config) | set(config), key=lambda k: (k not in CONFIG_FLAGS, k)):
        if saved_config.get(key) != config.get(key):
            name = CONFIG_FLAGS.get(key, f"hyperparameter {key}")
            raise ICMError(f"{where}: it was made with {name} {_show(saved_config.get(key))}, this command has "
                           f"{_show(config.get(key))}; {fix}")
    if {str(k): v for k, v in blob["clamped"].items()} != {str(k): int(v) for k, v in clamped.items()}:
        raise ICMError(f"{where}: it was made with other clamped labels ({len(blob['clamped'])} then, "
                       f"{len(clamped)} now); resume with the same --clamp file")
    if blob["ids"] != list(ids):  # same ids and seed, another order: only duplicate ids can do that
        raise ICMError(f"{where}: it was made for a different pool (the same ids in another order: are some ids "
                       "repeated?); choose another --out (the run folder is left as it is)")


def check_search(blob: dict[str, Any], path: str | Path, search: dict[str, Any]) -> None:
    """Refuse to resume with another rule (``ICM(rule=...)`` from the Python API) or another step budget (an
    ``iterations_per_example`` changed since). Checkpoints written before these were recorded are not checked."""
    for key, value in search.items():
        if key in blob.get("search", {}) and blob["search"][key] != value:
            raise ICMError(f"{path}: cannot resume: it was made with {key} {_show(blob['search'][key])}, this search "
                           f"has {_show(value)}; resume with the same settings, or choose another --out")


def memo_path(path: str | Path) -> Path:
    """Where the evaluation cache of the checkpoint at ``path`` is kept (next to it)."""
    path = Path(path)
    return path.with_name(path.stem + ".memo.npz")


def write_memo(path: str | Path, memo: OrderedDict[tuple, Evaluation], iteration: int) -> None:
    """The search's evaluation cache, in its LRU order, stamped with ``iteration``, written atomically, so a resumed
    search takes from it what the uninterrupted one took (a scorer that is not bit-exact would otherwise give a
    labelling the uninterrupted run took from the cache a slightly different U)."""
    entries = list(memo.items())
    n = len(entries[0][0]) if entries else 0
    labels = np.array([[-1 if y is None else y for y in key] for key, _ in entries], dtype=np.int64).reshape(-1, n)
    logprobs = np.array([[ev.logprobs[i] for i in range(n)] for _, ev in entries], dtype=np.float64)
    upi = np.array([[ev.U, ev.mutual_predictability, ev.inconsistencies] for _, ev in entries], dtype=np.float64)
    target = memo_path(path)
    _write_atomically(target, "wb", lambda fh: np.savez(fh, labels=labels, logprobs=logprobs, upi=upi,
                                                         iteration=np.int64(iteration)),
                      "cannot write the evaluation cache ({}); free disk space or make the folder writable, then "
                      "re-run with --resume")


def read_memo(path: str | Path, iteration: int) -> OrderedDict[tuple, Evaluation] | None:
    """The evaluation cache written with the checkpoint of ``iteration``; None when there is none, it is damaged or
    it belongs to another step (a kill between the two writes): the search then recomputes what it needs."""
    try:
        with np.load(memo_path(path)) as z:
            if int(z["iteration"]) != iteration:
                return None
            labels, logprobs, upi = z["labels"], z["logprobs"], z["upi"]
    except (OSError, ValueError, KeyError):
        return None
    memo: OrderedDict[tuple, Evaluation] = OrderedDict()
    for row, lp, (u, p, i) in zip(labels, logprobs, upi, strict=True):
        memo[tuple(None if y < 0 else int(y) for y in row)] = Evaluation(float(u), float(p), int(i), dict(enumerate(lp)))
    return memo


def _show(value: Any) -> str:
    return "(none)" if value is None else repr(value) if isinstance(value, str) else str(value)


def write_checkpoint(path: str | Path, blob: dict[str, Any]) -> None:
    """Write ``blob`` to ``path`` atomically (temporary file, fsync, rename).

    A kill leaves the old or the new checkpoint, never half of one. Raises ICMError when the file cannot be
    written (full disk, read-only folder); the temporary file is removed and the previous checkpoint kept.
    """
    _write_atomically(Path(path), "w", lambda fh: fh.write(json_text(blob)),
                      "cannot write the checkpoint ({}); the last one written is kept: free disk space or make the "
                      "folder writable, then re-run with --resume")


def _write_atomically(path: Path, mode: str, fill: Callable[[Any], Any], failure: str) -> None:
    """``fill(fh)`` into ``path`` + ".tmp", fsync, rename over ``path``; on OSError the temporary file goes, ``path``
    keeps what it held and ICMError says ``path: failure`` (``{}`` = the OS's reason)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open(mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ICMError(f"{path}: " + failure.format(err.strerror)) from None


def evaluation_blob(ev: Evaluation) -> dict[str, Any]:
    """``ev`` as JSON-ready values (label log-probabilities per example index)."""
    return {"U": ev.U, "P": ev.mutual_predictability, "I": ev.inconsistencies,
            "logprobs": {str(i): v.tolist() for i, v in ev.logprobs.items()}}


def evaluation_from_blob(c: dict[str, Any]) -> Evaluation:
    """The inverse of ``evaluation_blob``."""
    return Evaluation(c["U"], c["P"], c["I"], {int(i): np.asarray(v) for i, v in c["logprobs"].items()})
