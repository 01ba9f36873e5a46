"""The bootstrapping baseline (rule decoding, rounds, no same-group demonstrations) and `icm bench` end to end on the
tiny model (files written, table well-formed, resume rules)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scripted import ScriptedScorer
from test_train import icm_main

from icm_plugin.apps.bench import COLUMNS, LABEL_SETS, NAMES, ZERO_SHOT
from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import get_task
from icm_plugin.method.bootstrap import Bootstrap, group_loo_requests, rule_decode

FACTS = get_task("facts")


def _ex(i: int, group: str | None, key: str | None = None, label: int | None = None) -> Example:
    return Example(id=f"e{i}", question=f"q{group}", choice=f"c{i}", consistency_id=group, consistency_key=key,
                   label=label)


def _scores(margins: list[float]) -> np.ndarray:
    m = np.asarray(margins, dtype=float)
    return np.stack([-np.logaddexp(0, m), -np.logaddexp(0, -m)], axis=1)


def test_rule_decode_exactly_one_takes_each_groups_argmax():
    exs = [_ex(0, "a"), _ex(1, "a"), _ex(2, "a"), _ex(3, "b"), _ex(4, "b"), _ex(5, "c"), _ex(6, None)]
    labels = rule_decode(_scores([-3, -1, -2, 2, 5, -1, 1]), exs, "exactly_one")
    assert labels == [0, 1, 0, 0, 1, 0, 1]  # a group of one and an ungrouped example are free


def test_rule_decode_key_rules():
    exs = [_ex(0, "a", "7"), _ex(1, "a", "7"), _ex(2, "a", "8"), _ex(3, "b", "1"), _ex(4, "b", "2")]
    margins = [2, -1, 3, -1, -2]
    assert rule_decode(_scores(margins), exs, "same_key") == [1, 1, 1, 0, 0]
    assert rule_decode(_scores(margins), exs, "key") == [0, 0, 1, 0, 0]  # one key at most; none if all negative
    assert rule_decode(_scores(margins), exs, "none") == [1, 0, 1, 0, 0]


def test_demonstrations_leave_out_the_querys_own_group():
    exs = [_ex(i, g) for i, g in enumerate("aabbcc")]
    index, reqs = group_loo_requests(FACTS, exs, [1, 0, 1, 0, 1, 0], ["a", "b", "c"])
    assert sorted(index) == list(range(6))
    for i, req in zip(index, reqs, strict=True):
        own = {FACTS.prompt(e) for e in exs if e.consistency_id == exs[i].consistency_id}
        assert len(req.demos) == 4 and not any(d.rsplit(" ", 1)[0] in own for d in req.demos)


def test_bootstrap_keeps_a_consistent_labelling_and_stops_when_nothing_changes():
    exs = [_ex(i, f"g{i // 2}", label=int(i % 2 == (i // 2) % 2)) for i in range(16)]
    truth = {FACTS.prompt(e): int(e.label) for e in exs}
    scorer = ScriptedScorer(truth, strength=1.0, herd=2.0, bias=-0.3)
    boot = Bootstrap(scorer, FACTS, rounds=3, seed=0).fit(exs)
    assert boot.labels_ == [int(e.label) for e in exs]
    assert all(sum(boot.labels_[2 * g: 2 * g + 2]) == 1 for g in range(8))  # exactly one True per question
    assert boot.history_[0]["round"] == 0 and 1 <= boot.rounds_ <= 3 and boot.rule_name_ == "exactly_one"


def test_bootstrap_never_reads_gold():
    exs = [_ex(i, f"g{i // 2}", label=1) for i in range(4)]
    truth = {FACTS.prompt(e): i % 2 for i, e in enumerate(exs)}
    assert Bootstrap(ScriptedScorer(truth), FACTS, rounds=1).fit(exs).labels_ == [0, 1, 0, 1]


# ---- icm bench end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench"
    assert icm_main(["bench", "--task", "facts", "--model", str(tiny_model_dir), "--limit", "8", "--test-limit", "6",
                     "--seeds", "2", "--iterations", "3", "--bootstrap-rounds", "1", "--epochs", "1", "--lr", "1e-3",
                     "--out", str(out), "--quiet"]) == 0
    return out


def _table_rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_bench_writes_table_chart_and_numbers(bench_dir):
    assert (bench_dir / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    blob = json.loads((bench_dir / "bench.json").read_text())
    assert [s["seed"] for s in blob["seeds"]] == [0, 1] and blob["n_pool"] == 8 and blob["n_test"] == 6
    for seed in blob["seeds"]:
        assert seed["pool_accuracy"]["golden"]["accuracy"] == 1.0
        # golden = lm-eval's like-for-like source: gold labels of exactly the examples that seed's ICM run labelled
        icm_run = bench_dir / f"seed{seed['seed']}" / "icm"
        assert seed["details"]["golden"]["source"] == f"gold:{icm_run}"
        assert set(seed["fine_tuned"]) == {"icm", "golden"}
        assert all(v["via"] == "lm-eval" and 0 <= v["accuracy_rule"] <= 1 for v in seed["fine_tuned"].values())
        assert (bench_dir / f"seed{seed['seed']}" / "icm" / "labels.jsonl").exists()
    assert "Golden: the gold labels of the examples ICM labelled" in (bench_dir / "bench.md").read_text()
    rows = _table_rows((bench_dir / "bench.md").read_text())
    assert rows[0] == ["labels", *(c[3] for c in COLUMNS)]
    assert all(set(c) <= {"-", ":"} for c in rows[1]) and len(rows[1]) == len(COLUMNS) + 1
    body = rows[2:]
    assert [r[0] for r in body] == [NAMES[ZERO_SHOT], *(name for _, name in LABEL_SETS)]
    cell = re.compile(r"^(–|[01]\.\d{3} ± \d\.\d{3})$")
    for row in body:
        assert len(row) == len(COLUMNS) + 1 and all(cell.match(c) for c in row[1:]), row
    by_name = {r[0]: dict(zip(["labels", *(c[0] for c in COLUMNS)], r, strict=True)) for r in body}
    for column in ("fine_tuned", "fine_tuned_rule"):
        assert by_name["ICM"][column] != "–" and by_name["golden labels"][column] != "–"
        assert by_name["bootstrap"][column] == "–"
    assert by_name["golden labels"]["pool"].startswith("1.000") and by_name[NAMES[ZERO_SHOT]]["pool"] == "–"
    assert by_name["ICM"]["many_shot_rule"] != "–"


def test_bench_refuses_to_overwrite_and_resume_keeps_done_seeds(bench_dir, tiny_model_dir, capsys):
    args = ["bench", "--task", "facts", "--model", str(tiny_model_dir), "--limit", "8", "--test-limit", "6",
            "--seeds", "2", "--iterations", "3", "--bootstrap-rounds", "1", "--epochs", "1", "--lr", "1e-3",
            "--out", str(bench_dir), "--quiet"]
    assert icm_main(args) == 2
    assert "--resume" in capsys.readouterr().err
    before = (bench_dir / "bench.json").read_text()
    assert icm_main([*args, "--resume"]) == 0  # every seed is done: nothing reruns
    assert json.loads((bench_dir / "bench.json").read_text())["seeds"] == json.loads(before)["seeds"]
    assert icm_main([*[a if a != "3" else "4" for a in args], "--resume"]) == 2  # other ICM settings
