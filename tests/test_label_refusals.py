"""`icm label` refuses a resume it cannot honour before it writes a byte or loads the model; what a checkpoint
records (model, scorer, rule, task, data) must match; two writers of one run folder cannot both proceed; a run
that fails before its first checkpoint leaves no stub behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icm_plugin.cli.main import main

ICM = [sys.executable, "-m", "icm_plugin.cli.main"]


def label_args(model: Path, out: Path, *extra: str) -> list[str]:
    """The test run's arguments; a flag in ``extra`` that is already there replaces its value."""
    base = {"--task": "facts", "--model": str(model), "--limit": "16", "--seed": "3", "--dtype": "float32",
            "--iterations": "20", "--out": str(out)}
    rest = []
    items = list(extra)
    while items:
        flag = items.pop(0)
        if flag in base:
            base[flag] = items.pop(0)
        else:
            rest.append(flag)
    return ["label", *(x for kv in base.items() for x in kv), *rest]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(label_args(tiny_model_dir, out)) == 0
    return out


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded (the refusal must come first)."""
    import icm_plugin.scoring.registry as registry

    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded before the resume was refused")

    monkeypatch.setattr(registry, "scorer_for", refuse)


@pytest.mark.parametrize(("extra", "named"), [
    (["--limit", "24"], "different pool"),
    (["--alpha", "10"], "--alpha 50.0, this command has 10.0"),
    (["--seed", "4"], "--seed 3, this command has 4"),
    (["--iterations", "30"], "--iterations 20, this command has 30"),
    (["--no-force-repair"], "--force-repair True, this command has False"),
    (["--rule", "none"], "--rule 'exactly_one', this command has 'none'"),
    (["--scorer", "reference"], "--scorer 'prefix', this command has 'reference'"),
    (["--dtype", "bfloat16"], "--dtype 'float32', this command has 'bfloat16'"),
    (["--model", "another-model-folder"], "--model"),
])
def test_refused_resume_writes_nothing_and_names_the_setting(finished, tiny_model_dir, capsys, no_model_load,
                                                             extra, named):
    before = snapshot(finished)
    assert main(label_args(tiny_model_dir, finished, "--resume", *extra)) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and named in err and "Traceback" not in err
    assert snapshot(finished) == before  # not one byte, not one mtime


def test_resume_with_another_clamp_file_is_refused(finished, tiny_model_dir, tmp_path, capsys, no_model_load):
    ex_id = json.loads((finished / "labels.jsonl").read_text().splitlines()[0])["id"]
    clamp = tmp_path / "clamp.jsonl"
    clamp.write_text(json.dumps({"id": ex_id, "label": 1}) + "\n")
    before = snapshot(finished)
    assert main(label_args(tiny_model_dir, finished, "--resume", "--clamp", str(clamp))) == 2
    assert "other clamped labels" in capsys.readouterr().err
    assert snapshot(finished) == before


def test_checkpoint_records_the_run(finished, tiny_model_dir):
    blob = json.loads((finished / "checkpoint.json").read_text())
    assert blob["run"] == {"task": "facts", "data": None, "model": str(tiny_model_dir), "model_type": None,
                           "model_args": None, "scorer": "prefix", "dtype": "float32", "rule": "exactly_one"}


def test_a_resume_where_dtype_auto_resolves_otherwise_is_refused_naming_the_dtype_to_pass(
        finished, tiny_model_dir, capsys, no_model_load, monkeypatch):
    """The run was made in float32; on a CPU with hardware bfloat16 `--dtype auto` is bfloat16, whose labels can
    differ: the resume is refused before anything is written, and the message says which --dtype resumes it."""
    from icm_plugin.scoring import hardware

    monkeypatch.setattr(hardware, "cpu_has_fast_bfloat16", lambda: True)
    before = snapshot(finished)
    assert main(label_args(tiny_model_dir, finished, "--resume", "--dtype", "auto", "--device", "cpu")) == 2
    err = capsys.readouterr().err
    assert "--dtype 'float32', this command has 'bfloat16'" in err and "pass --dtype float32" in err, err
    assert snapshot(finished) == before


def test_a_checkpoint_written_before_dtype_was_recorded_still_resumes(finished, tiny_model_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    blob = json.loads((old / "checkpoint.json").read_text())
    del blob["run"]["dtype"]
    (old / "checkpoint.json").write_text(json.dumps(blob))
    assert main(label_args(tiny_model_dir, old, "--resume")) == 0
    assert (old / "labels.jsonl").read_text() == (finished / "labels.jsonl").read_text()


def test_the_same_resume_is_accepted(finished, tiny_model_dir):
    labels = (finished / "labels.jsonl").read_text()
    assert main(label_args(tiny_model_dir, finished, "--resume")) == 0
    assert (finished / "labels.jsonl").read_text() == labels


@pytest.mark.parametrize(("content", "message"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "binary, not UTF-8 JSON"),
    (b"[1, 2, 3]", "a JSON list, expected an object"),
    (b'{"version": 3, "config": {}}', "lacks the key 'ids'"),
    (b"", "not valid JSON"),
])
def test_a_damaged_checkpoint_is_one_clear_error(tiny_model_dir, tmp_path, capsys, no_model_load, content, message):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.json").write_bytes(content)
    assert main(label_args(tiny_model_dir, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert "checkpoint.json" in err and message in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.json"]


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_stub(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "new" / "run"
    # a memory budget no prompt fits: refused after the model loaded, before the search
    assert main(label_args(tiny_model_dir, out, "--memory-limit", "0.01MiB")) == 2
    assert "too long for this machine" in capsys.readouterr().err
    assert not out.exists()  # the folder it made is gone again: the plain re-run is not blocked
    existing = tmp_path / "empty"
    existing.mkdir()
    assert main(label_args(tiny_model_dir, existing, "--memory-limit", "1MiB")) == 2
    assert existing.is_dir() and not any(existing.iterdir())  # a folder the user made stays, empty


def test_a_second_writer_of_one_run_folder_is_locked_out(tiny_model_dir, tmp_path):
    """The first writer is paused (SIGSTOP) at its first checkpoint, holding the lock: on the tiny model the search
    reaches a fixed point within a second, and under load it could finish before the second command starts."""
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    first = subprocess.Popen(ICM + label_args(tiny_model_dir, out, "--limit", "64", "--iterations", "5000", "--start", "seed"),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.json").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.005)
        first.send_signal(signal.SIGSTOP)
        assert (out / "checkpoint.json").exists(), "the first run never checkpointed"
        assert first.poll() is None, "the first run ended before it could be paused"
        second = subprocess.run(ICM + label_args(tiny_model_dir, out, "--limit", "64", "--iterations", "5000",
                                                 "--start", "seed", "--resume"),
                                env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert "another `icm label` is writing this run folder" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first one is still there, holding its lock, undisturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kill released the lock: the resume proceeds (checked up to the refusal point only)
    third = subprocess.run(ICM + label_args(tiny_model_dir, out, "--limit", "64", "--iterations", "4999", "--resume"),
                           env=env, capture_output=True, text=True, timeout=120)
    assert third.returncode == 2 and "--iterations 5000, this command has 4999" in third.stderr


def test_a_batched_resume_checks_every_batch_before_writing(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "batched"
    assert main(label_args(tiny_model_dir, out, "--batch-size", "8", "--iterations", "6")) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # the batches are all finished: without the check a finished batch would be kept under the new --alpha
    assert main(label_args(tiny_model_dir, out, "--batch-size", "8", "--iterations", "6", "--alpha", "10",
                           "--resume")) == 2
    err = capsys.readouterr().err
    assert "batches/000/checkpoint.json: cannot resume" in err and "--alpha 50.0, this command has 10.0" in err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
