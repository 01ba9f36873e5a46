"""`icm label --batch-size`: splitting by consistency group, per-batch resume, the merged run folder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scripted import ScriptedScorer

from icm_plugin.apps.batches import BatchRunner, merge_batches, split_by_group
from icm_plugin.cli.main import main
from icm_plugin.core.examples import Example, group_key
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.method.search import ICM, ICMConfig

TASK = get_task("facts")


def ragged_pool(n_groups: int, seed: int, singles: int = 5) -> list[Example]:
    """Groups of 1 to 6 claims (exactly one True each), plus examples without a consistency_id."""
    rng = random.Random(seed)
    out = []
    for g in range(n_groups):
        size = rng.randint(1, 6)
        right = rng.randrange(size)
        out += [Example(id=f"g{g}-{k}", question=f"Question {g}?", choice=f"answer {g}.{k}", consistency_id=f"g{g}",
                        label=int(k == right)) for k in range(size)]
    out += [Example(id=f"s{k}", question=f"Single {k}?", choice=f"alone {k}", label=k % 2) for k in range(singles)]
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("batch_size", [1, 4, 7, 16, 50, 1000])
def test_split_never_splits_a_group_and_keeps_every_example_once(seed, batch_size):
    pool = ragged_pool(40, seed)
    batches = split_by_group(pool, batch_size)
    ids = [e.id for b in batches for e in b]
    assert sorted(ids) == sorted(e.id for e in pool)  # every example exactly once
    home = {}
    for b, batch in enumerate(batches):
        for e in batch:
            assert home.setdefault(group_key(e), b) == b, f"group {group_key(e)} split across batches"
        groups = {group_key(e) for e in batch}
        # over the size only when one group alone is bigger than the batch
        assert len(batch) <= batch_size or len(groups) == 1
        positions = [pool.index(e) for e in batch]
        assert positions == sorted(positions)  # pool order inside a batch


def test_split_sizes_are_even_and_independent_of_file_order():
    pool = ragged_pool(120, 7, singles=0)
    batches = split_by_group(pool, 64)
    sizes = [len(b) for b in batches]
    assert max(sizes) <= 64 and min(sizes) >= 64 - 12  # no tiny last batch
    shuffled = list(pool)
    random.Random(1).shuffle(shuffled)
    assert [sorted(e.id for e in b) for b in split_by_group(shuffled, 64)] == [sorted(e.id for e in b) for b in batches]


def test_split_rejects_a_batch_size_below_one():
    with pytest.raises(ICMError, match="--batch-size"):
        split_by_group(ragged_pool(3, 0), 0)


def pairs_pool(n_groups: int) -> list[Example]:
    out = []
    for g in range(n_groups):
        for slot in range(2):
            out.append(Example(id=f"g{g}-{slot}", question=f"Question {g}?", choice=f"answer {g}.{slot}",
                               consistency_id=f"g{g}", label=int(slot == g % 2)))
    return out


def run_batches(scorer, pool, root: Path, resume: bool) -> list[dict]:
    runner = BatchRunner(scorer, TASK, ICMConfig(seed=3, iterations=12, num_seed=2, start="seed"), resume=resume)
    summaries = runner.run(split_by_group(pool, 8), {}, root / "batches")
    merge_batches(root, pool, split_by_group(pool, 8), summaries, base={"alpha": 50.0})
    return summaries


def labels_of(root: Path) -> list[tuple[str, int]]:
    return [(r["id"], r["label"]) for r in map(json.loads, (root / "labels.jsonl").read_text().splitlines())]


def test_per_batch_resume_skips_finished_batches_and_continues_the_interrupted_one(tmp_path, monkeypatch):
    pool = pairs_pool(12)  # 24 examples -> 3 batches of 8
    truth = {TASK.prompt(e): e.label for e in pool}
    straight = tmp_path / "straight"
    run_batches(ScriptedScorer(truth, herd=1.0), pool, straight, resume=False)

    crashed = tmp_path / "crashed"
    save = ICM._save_checkpoint

    def save_then_crash(self, path, state, *args):
        save(self, path, state, *args)
        if path.parent.name == "001" and state.iteration == 2:
            raise KeyboardInterrupt  # killed right after step 2 of batch 1 was checkpointed

    monkeypatch.setattr(ICM, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run_batches(ScriptedScorer(truth, herd=1.0), pool, crashed, resume=False)
    monkeypatch.setattr(ICM, "_save_checkpoint", save)
    first = crashed / "batches" / "000" / "report.json"
    second_ckpt = crashed / "batches" / "001" / "checkpoint.json"
    assert first.exists() and not (crashed / "batches" / "001" / "report.json").exists()
    assert json.loads(second_ckpt.read_text())["iteration"] == 2
    report_before = first.read_text()

    class Recording(ScriptedScorer):
        queries: set = set()

        def label_logprobs(self, requests):
            self.queries.update(r.query for r in requests)
            return super().label_logprobs(requests)

    loaded = []
    load = ICM._load_checkpoint
    monkeypatch.setattr(ICM, "_load_checkpoint", lambda self, path: loaded.append(path.parent.name) or load(self, path))
    resumed = Recording(truth, herd=1.0)
    summaries = run_batches(resumed, pool, crashed, resume=True)
    assert loaded == ["001"]  # the interrupted batch continued from its checkpoint
    assert first.read_text() == report_before  # the finished batch was not redone...
    assert not resumed.queries & {TASK.prompt(e) for e in split_by_group(pool, 8)[0]}  # ...nor rescored
    history = [json.loads(line) for line in (crashed / "batches" / "001" / "history.jsonl").read_text().splitlines()]
    straight_history = (straight / "batches" / "001" / "history.jsonl").read_text().splitlines()
    assert len(straight_history) > 3  # the crash came mid-search
    assert history == [json.loads(line) for line in straight_history]
    assert labels_of(crashed) == labels_of(straight)
    assert [s["batch"] for s in summaries] == ["000", "001", "002"]


def test_each_batch_is_the_search_on_that_batch_alone_and_the_merge_keeps_its_labels(tmp_path):
    from dataclasses import replace

    pool = pairs_pool(12)
    truth = {TASK.prompt(e): e.label for e in pool}
    summaries = run_batches(ScriptedScorer(truth, herd=1.0), pool, tmp_path, resume=False)
    merged = dict(labels_of(tmp_path))
    assert sorted(merged) == sorted(e.id for e in pool)
    config = ICMConfig(seed=3, iterations=12, num_seed=2)
    for b, (batch, summary) in enumerate(zip(split_by_group(pool, 8), summaries, strict=True)):
        alone = ICM(ScriptedScorer(truth, herd=1.0), TASK, replace(config, seed=3 + b)).fit(batch, progress=False)
        assert summary["U"] == alone.U_ and summary["ids"] == [e.id for e in batch]
        assert [merged[e.id] for e in batch] == alone.labels_


def test_parallel_batches_equal_sequential_ones(tmp_path):
    pool = pairs_pool(12)
    truth = {TASK.prompt(e): e.label for e in pool}

    class Forkable(ScriptedScorer):
        parallel_capacity = 3

        def fork(self):
            return Forkable(self.truth, self.strength, self.herd)

    run_batches(ScriptedScorer(truth, herd=1.0), pool, tmp_path / "seq", resume=False)
    run_batches(Forkable(truth, herd=1.0), pool, tmp_path / "par", resume=False)
    assert labels_of(tmp_path / "par") == labels_of(tmp_path / "seq")


def label_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["label", "--task", "facts", "--model", str(model), "--limit", "12", "--seed", "2", "--dtype", "float32",
            "--iterations", "4", "--batch-size", "6", "--out", str(out), *extra]


def test_cli_batched_run_folder_and_resume_of_a_finished_run(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(label_args(tiny_model_dir, out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 12 and report["batches"] == 2 and len(report["per_batch"]) == 2
    per = report["per_batch"]
    assert report["token_forwards"] == sum(b["token_forwards"] for b in per) > 0
    assert report["seconds"] == pytest.approx(sum(b["seconds"] for b in per), abs=0.02)
    assert report["inconsistencies"] == sum(b["inconsistencies"] for b in per)
    assert report["mutual_predictability"] == pytest.approx(np.mean([b["mutual_predictability"] for b in per]))
    labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    examples = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in labels] == [e["id"] for e in examples]
    gold = [r["gold"] for r in labels]
    assert report["accuracy"] == pytest.approx(np.mean([r["label"] == g for r, g in zip(labels, gold, strict=True)]))
    split = json.loads((out / "batches.json").read_text())
    assert sorted(i for b in split["batches"] for i in b["ids"]) == sorted(r["id"] for r in labels)
    merged = {r["id"]: r for r in labels}
    for b, row in zip(split["batches"], per, strict=True):
        folder = out / "batches" / b["batch"]
        own = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines()]
        assert [r["id"] for r in own] == b["ids"] and row["batch"] == b["batch"]  # each batch: its own examples
        assert all(merged[r["id"]]["label"] == r["label"] for r in own)  # and the merge kept its labels
        assert (folder / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    before = (out / "labels.jsonl").read_text()
    capsys.readouterr()
    assert main(label_args(tiny_model_dir, out, "--resume")) == 0
    assert capsys.readouterr().out.count("done earlier, kept") == 2
    assert (out / "labels.jsonl").read_text() == before


def test_cli_refuses_a_resume_with_another_split(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "batches").mkdir(parents=True)
    (out / "batches.json").write_text(json.dumps({"batch_size": 4, "seed": 2, "batches": []}))
    assert main(label_args(tiny_model_dir, out, "--resume")) == 2
    assert "split differently" in capsys.readouterr().err
