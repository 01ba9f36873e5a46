"""Bad input and faults end in one clear line, exit code 2, no traceback and nothing lost (issue 12, sections 5
and 6): undecodable data, bad flags, --out that is a file or cannot be made, a full disk at a checkpoint or at
the final writes, a clamp file with two labels for one id; and what used to be accepted silently."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icm_plugin.cli.main import RULE_CHOICES, main
from icm_plugin.method.consistency import RULES

ICM = [sys.executable, "-m", "icm_plugin.cli.main"]


def label_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["label", "--task", "facts", "--model", str(model), "--limit", "16", "--seed", "3", "--dtype", "float32",
            "--iterations", "30", "--start", "seed", "--out", str(out), *extra]  # seed start: many steps to kill


def error_of(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (not JSON)."""
    def bad(name):
        raise ValueError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=bad)


# ---- flags: argparse says what is wrong, exit 2 ----------------------------------------------------------

@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--seed", "-3", "must be at least 0"),
    ("--iterations", "0", "must be at least 1"),
    ("--iterations", "-5", "must be at least 1"),
    ("--alpha", "-1", "positive finite"),
    ("--alpha", "nan", "positive finite"),
    ("--alpha", "inf", "positive finite"),
    ("--rule", "bogus", "invalid choice: 'bogus'"),
    ("--batch-size", "0", "must be at least 1"),
    ("--memory-limit", "lots", "not a size"),
])
def test_bad_flags_are_refused_by_the_parser(capsys, flag, value, says):
    with pytest.raises(SystemExit) as stop:
        main(["label", "--task", "facts", flag, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and says in err and "Traceback" not in err


def test_rule_choices_are_the_rules():
    assert sorted(RULE_CHOICES) == sorted(RULES)


# ---- data that is not UTF-8 -----------------------------------------------------------------------------

def _facts_rows(n: int = 4) -> list[dict]:
    return [{"id": f"r{i}", "question": f"Question {i // 2}?", "choice": f"Answer {i}", "consistency_id": f"q{i // 2}",
             "label": i % 2} for i in range(n)]


def test_a_jsonl_with_a_0xff_byte_names_the_file_and_line(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "pool.jsonl"
    lines = [json.dumps(r).encode() for r in _facts_rows()]
    lines[2] = lines[2].replace(b"Answer 2", b"Answer \xff")
    data.write_bytes(b"\n".join(lines) + b"\n")
    err = error_of(capsys, label_args(tiny_model_dir, tmp_path / "out", "--data", str(data)))
    assert f"{data}: line 3: not UTF-8 text (byte 0xff)" in err
    assert not (tmp_path / "out").exists()


def test_a_latin1_json_names_the_file_and_line(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "pool.json"
    rows = _facts_rows()
    rows[1]["choice"] = "Café"
    data.write_bytes(json.dumps(rows, indent=1, ensure_ascii=False).encode("latin-1"))
    line = next(n for n, text in enumerate(data.read_bytes().split(b"\n"), start=1) if b"Caf" in text)
    err = error_of(capsys, label_args(tiny_model_dir, tmp_path / "out", "--data", str(data)))
    assert f"{data}: line {line}: not UTF-8 text" in err


def test_a_clamp_file_that_is_not_utf8(tiny_model_dir, tmp_path, capsys):
    clamp = tmp_path / "clamp.jsonl"
    clamp.write_bytes(b'{"id": "caf\xe9", "label": 1}\n')
    err = error_of(capsys, label_args(tiny_model_dir, tmp_path / "out", "--clamp", str(clamp)))
    assert f"{clamp}: line 1: not UTF-8 text" in err


# ---- --out ------------------------------------------------------------------------------------------------

def test_out_naming_a_file(tiny_model_dir, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    err = error_of(capsys, label_args(tiny_model_dir, target))
    assert "is a file, not a folder" in err and target.read_text() == "mine"


def test_out_that_cannot_be_created(tiny_model_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = error_of(capsys, label_args(tiny_model_dir, blocker / "run"))
    assert f"--out {blocker / 'run'}: cannot create the folder" in err


# ---- clamps ------------------------------------------------------------------------------------------------

def test_a_clamp_file_giving_one_id_two_labels(tiny_model_dir, tmp_path, capsys):
    clamp = tmp_path / "clamp.jsonl"
    clamp.write_text('{"id": "a", "label": 1}\n{"id": "b", "label": 0}\n{"id": "a", "label": false}\n')
    err = error_of(capsys, label_args(tiny_model_dir, tmp_path / "out", "--clamp", str(clamp)))
    assert f"{clamp}: line 3: id 'a' has label 0 here and 1 at {clamp}: line 1" in err


def test_a_clamped_id_outside_the_pool_is_refused_before_anything_is_written(tiny_model_dir, tmp_path, capsys):
    clamp = tmp_path / "clamp.jsonl"
    clamp.write_text('{"id": "not-in-the-pool", "label": 1}\n')
    err = error_of(capsys, label_args(tiny_model_dir, tmp_path / "out", "--clamp", str(clamp)))
    assert "clamped id 'not-in-the-pool' is not in the pool" in err
    assert not (tmp_path / "out").exists()


def test_compare_to_without_a_finished_run_is_refused_first(tiny_model_dir, tmp_path, capsys):
    err = error_of(capsys, label_args(tiny_model_dir, tmp_path / "out", "--compare-to", str(tmp_path / "nothing")))
    assert "--compare-to needs a finished run folder" in err and not (tmp_path / "out").exists()


# ---- a full disk (/dev/full answers every write with ENOSPC) ----------------------------------------------

@pytest.fixture(scope="module")
def straight(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(label_args(tiny_model_dir, out)) == 0
    return out


def test_full_disk_at_a_checkpoint_then_resume_gives_the_same_labels(tiny_model_dir, straight, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(ICM + label_args(tiny_model_dir, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    tmp = out / "checkpoint.json.tmp"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # the disk fills up once step 2 is saved
        try:
            if json.loads((out / "checkpoint.json").read_text())["iteration"] >= 2:
                os.symlink("/dev/full", tmp)
                break
        except (FileNotFoundError, FileExistsError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-2000:]
    assert "cannot write the checkpoint (No space left on device)" in err and "--resume" in err
    assert "Traceback" not in err
    assert not tmp.exists() and not tmp.is_symlink()  # the truncated temporary file is gone
    saved = json.loads((out / "checkpoint.json").read_text())
    total = json.loads((straight / "report.json").read_text())["iterations"]
    assert 2 <= saved["iteration"] < total and not (out / "labels.jsonl").exists()
    assert main(label_args(tiny_model_dir, out, "--resume")) == 0
    assert read_jsonl(out / "labels.jsonl") == read_jsonl(straight / "labels.jsonl")


def test_full_disk_at_the_final_writes_then_resume(tiny_model_dir, straight, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    os.symlink("/dev/full", out / "labels.jsonl.tmp")  # the disk is full when the labels are written
    err = error_of(capsys, label_args(tiny_model_dir, out, "--resume"))
    assert f"{out / 'labels.jsonl'}: cannot write (No space left on device)" in err
    assert not (out / "labels.jsonl.tmp").is_symlink() and not (out / "labels.jsonl").exists()
    total = json.loads((straight / "report.json").read_text())["iterations"]
    assert json.loads((out / "checkpoint.json").read_text())["iteration"] == total  # the search is kept
    assert main(label_args(tiny_model_dir, out, "--resume")) == 0
    assert read_jsonl(out / "labels.jsonl") == read_jsonl(straight / "labels.jsonl")


# ---- no more silent acceptance ----------------------------------------------------------------------------

def test_json_files_never_hold_bare_nan(tmp_path):
    from icm_plugin.core.writers import write_json, write_jsonl

    write_json(tmp_path / "a.json", {"U": math.nan, "xs": [1.0, math.inf, -math.inf]})
    write_jsonl(tmp_path / "b.jsonl", [{"U": math.nan}])
    assert strict_json((tmp_path / "a.json").read_text()) == {"U": None, "xs": [1.0, None, None]}
    assert strict_json((tmp_path / "b.jsonl").read_text()) == {"U": None}


def test_run_folder_json_is_strict(straight):
    for name in ("report.json", "checkpoint.json", "config.json"):
        strict_json((straight / name).read_text())
    for line in (straight / "history.jsonl").read_text().splitlines():
        strict_json(line)


def test_a_pool_without_groups_warns_and_the_report_says_so(tiny_model_dir, tmp_path, capsys):
    rows = _facts_rows(6)
    for r in rows:
        del r["consistency_id"]
    del rows[2]["label"]  # one example without gold
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(label_args(tiny_model_dir, out, "--data", str(data), "--iterations", "6")) == 0
    captured = capsys.readouterr()
    assert "warning: rule 'exactly_one' checks pairs inside consistency groups" in captured.err
    report = json.loads((out / "report.json").read_text())
    assert report["rule"] == "exactly_one" and report["consistency_groups"] == 0
    assert "nothing was checked" in report["rule_note"]
    # accuracy over the five examples that have gold, not null for the whole pool
    labels = read_jsonl(out / "labels.jsonl")
    scored = [r for r in labels if "gold" in r]
    assert report["gold_n"] == 5 == len(scored)
    assert report["accuracy"] == pytest.approx(sum(r["label"] == r["gold"] for r in scored) / 5)
    assert "on the 5 of 6 examples that have gold" in captured.out


def test_the_report_names_the_rule_actually_used(tiny_model_dir, tmp_path):
    rows = [{"id": f"t{i}", "question": "What happens if you eat watermelon seeds?",
             "choice": ["Nothing happens.", "nothing  happens.", "You grow a watermelon."][i % 3],
             "consistency_id": "seeds", "label": int(i % 3 != 2)} for i in range(6)]
    data = tmp_path / "tqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(["label", "--task", "truthfulqa", "--data", str(data), "--model", str(tiny_model_dir), "--dtype",
                 "float32", "--iterations", "6", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["rule"] == "same_key" and report["consistency_groups"] == 1
    assert json.loads((out / "checkpoint.json").read_text())["run"]["rule"] == "same_key"
