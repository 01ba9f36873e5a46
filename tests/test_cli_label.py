"""`icm label` end to end on a tiny model: run folder contents, kill -9 + --resume identity, labels-to-hf."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icm_plugin.cli.main import main

ICM = [sys.executable, "-m", "icm_plugin.cli.main"]


def label_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["label", "--task", "facts", "--model", str(model), "--limit", "16", "--seed", "3", "--dtype", "float32",
            "--out", str(out), *extra]


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "facts"
    assert main(label_args(tiny_model_dir, out, "--iterations", "40")) == 0
    return out


def test_run_folder_has_labels_conflicts_report_and_plot(finished_run):
    labels = read_jsonl(finished_run / "labels.jsonl")
    assert len(labels) == 16
    assert all(set(r) - {"model_prefers"} == {"id", "label", "value", "confidence", "against_model", "gold"}
               for r in labels)
    # a label the model itself finds less likely than another is marked, with the label it prefers
    assert all(("model_prefers" in r) == r["against_model"] for r in labels)
    assert all(r["model_prefers"] != r["label"] for r in labels if r["against_model"])
    assert all(r["label"] in (0, 1) and 0 <= r["confidence"] <= 1 for r in labels)
    assert all(r["value"] == ["False", "True"][r["label"]] for r in labels)  # the label itself, beside its index
    report = json.loads((finished_run / "report.json").read_text())
    for key in ("n", "iterations", "U", "mutual_predictability", "inconsistencies", "seconds", "token_forwards",
                "accuracy", "balanced_accuracy", "collapsed_to_one_class", "true_rate_by_slot"):
        assert key in report
    assert report["n"] == 16 and report["token_forwards"] > 0
    assert report["iterations"] == 40 or (report["converged"] and report["iterations"] < 40)
    assert set(report["reference"]) == {"zero_shot", "zero_shot_rule"} and report["reference_token_forwards"] > 0
    for row in report["reference"].values():  # the tiny pool has gold on every example
        assert 0 <= row["agreement"] <= 1 and 0 <= row["accuracy"] <= 1 and 0 <= row["balanced_accuracy"] <= 1
    rel = report["reliability"]  # the gold-free verdict
    assert set(rel) == {"flag", "reasons", "signals", "thresholds", "records_against_model"}
    assert rel["flag"] == bool(rel["reasons"])
    assert rel["records_against_model"] == sum(r["against_model"] for r in labels)
    assert rel["signals"]["against_model"] == pytest.approx(rel["records_against_model"] / 16, abs=1e-4)
    gold = [r["gold"] for r in labels]
    pred = [r["label"] for r in labels]
    assert report["accuracy"] == pytest.approx(sum(a == b for a, b in zip(pred, gold, strict=True)) / 16)
    for row in read_jsonl(finished_run / "conflicts.jsonl"):
        assert {"rule", "ids", "labels_before", "labels_after", "resolution"} <= set(row)
    assert (finished_run / "progress.png").stat().st_size > 1000


def test_refuses_to_overwrite_a_run(finished_run, tiny_model_dir, capsys):
    before = (finished_run / "labels.jsonl").read_text()
    assert main(label_args(tiny_model_dir, finished_run)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (finished_run / "labels.jsonl").read_text() == before


def test_labels_to_hf(finished_run, tmp_path):
    import datasets

    assert main(["labels-to-hf", str(finished_run), "--out", str(tmp_path / "ds")]) == 0
    ds = datasets.load_from_disk(str(tmp_path / "ds"))
    assert len(ds) == 16 and {"question", "choice", "label", "confidence", "gold"} <= set(ds.column_names)


def test_bad_clamp_file_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    clamp = tmp_path / "clamp.jsonl"
    clamp.write_text('{"id": "x", "label": "perhaps"}\n')
    assert main(label_args(tiny_model_dir, tmp_path / "out", "--clamp", str(clamp))) == 2
    assert "clamp.jsonl: line 1: field 'label'" in capsys.readouterr().err


def test_kill_9_then_resume_gives_the_same_labels(tiny_model_dir, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = ["--iterations", "60", "--start", "seed"]  # the seed start labels the pool step by step: many steps
    subprocess.run(ICM + label_args(tiny_model_dir, straight, *args), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(ICM + label_args(tiny_model_dir, killed, *args), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoint.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(ckpt.read_text())["iteration"] >= 2:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(ckpt.read_text())["iteration"]
    total = json.loads((straight / "report.json").read_text())["iterations"]
    assert 2 <= stopped_at < total, "the run must be killed mid-search"
    assert not (killed / "labels.jsonl").exists()
    subprocess.run(ICM + label_args(tiny_model_dir, killed, *args, "--resume"), check=True, env=env, capture_output=True)
    assert read_jsonl(killed / "labels.jsonl") == read_jsonl(straight / "labels.jsonl")
    a, b = (json.loads((d / "report.json").read_text()) for d in (killed, straight))
    assert a["U"] == b["U"] and a["iterations"] == b["iterations"] <= 60
    assert read_jsonl(killed / "history.jsonl") == read_jsonl(straight / "history.jsonl")


def test_scorer_choices_are_the_registry():
    # the CLI lists the names literally (importing the registry would load numpy for `icm --help`)
    from icm_plugin.cli.main import build_parser
    from icm_plugin.scoring.registry import SCORERS

    label = build_parser()._subparsers._group_actions[0].choices["label"]
    action = next(a for a in label._actions if "--scorer" in a.option_strings)
    assert sorted(action.choices) == sorted(SCORERS)
