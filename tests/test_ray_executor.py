"""`icm label --batch-size N --executor ray`: batches as Ray tasks on a real local cluster of 2 worker CPUs.

The labels equal the sequential run's; a batch killed mid-search resumes alone from its checkpoint under Ray; a
deleted report.json redoes that batch only; an unreachable --ray-address and a missing Ray are one clear error
each, before anything is written.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest

from icm_plugin.cli.main import main
from icm_plugin.method.search import ICM

BATCHES = ["000", "001", "002", "003"]


def label_args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["label", "--task", "facts", "--model", str(model), "--limit", "16", "--seed", "2", "--dtype", "float32",
            "--iterations", "6", "--start", "seed", "--batch-size", "4", "--out", str(out), *extra]  # seed start: steps to kill


def labels_of(out: Path) -> list[tuple[str, int]]:
    return [(r["id"], r["label"]) for r in map(json.loads, (out / "labels.jsonl").read_text().splitlines())]


def reports(out: Path) -> dict[str, tuple[str, int]]:
    """Each batch's report.json: its text and modification time (a batch redone rewrites it)."""
    found = {}
    for b in BATCHES:
        path = out / "batches" / b / "report.json"
        if path.exists():
            found[b] = (path.read_text(), path.stat().st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs in this process: 2 batches run at once, each in its own worker process."""
    import ray  # in the dev extra; not skipped when missing: these tests fail then

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sequential(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq") / "run"
    assert main(label_args(tiny_model_dir, out, "--executor", "sequential")) == 0
    split = json.loads((out / "batches.json").read_text())
    assert [b["batch"] for b in split["batches"]] == BATCHES  # the pool of 16 splits into 4 batches of 4
    return out


def test_ray_batches_give_the_sequential_labels(cluster, sequential, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "ray"
    assert main(label_args(tiny_model_dir, out, "--executor", "ray")) == 0
    assert "as Ray tasks (0 GPU each)" in capsys.readouterr().out
    assert labels_of(out) == labels_of(sequential)
    report, straight = (json.loads((d / "report.json").read_text()) for d in (out, sequential))
    assert report["batches"] == 4 and [b["batch"] for b in report["per_batch"]] == BATCHES
    for field in ("n", "iterations", "accepted", "inconsistencies", "seed"):
        assert [b[field] for b in report["per_batch"]] == [b[field] for b in straight["per_batch"]], field
    assert json.loads((out / "config.json").read_text())["executor"] == "ray"

    # a batch whose report.json is gone is redone, alone
    before = reports(out)
    (out / "batches" / "002" / "report.json").unlink()
    assert main(label_args(tiny_model_dir, out, "--executor", "ray", "--resume")) == 0
    assert capsys.readouterr().out.count("done earlier, kept") == 3
    after = reports(out)
    assert {b: after[b] for b in ("000", "001", "003")} == {b: before[b] for b in ("000", "001", "003")}
    assert after["002"][1] != before["002"][1]
    assert labels_of(out) == labels_of(sequential)


def test_a_killed_batch_resumes_alone_from_its_checkpoint_on_ray(cluster, sequential, tiny_model_dir, tmp_path,
                                                                 monkeypatch, capsys):
    straight = {b["batch"]: b for b in json.loads((sequential / "report.json").read_text())["per_batch"]}
    victim = max(BATCHES[1:], key=lambda b: straight[b]["iterations"])  # a batch whose search runs a while
    assert straight[victim]["iterations"] >= 3
    out = tmp_path / "killed"
    save = ICM._save_checkpoint

    def save_then_die(self, path, state, *args):
        save(self, path, state, *args)
        if path.parent.name == victim and state.iteration == 2:
            raise KeyboardInterrupt  # killed right after its step 2 was checkpointed

    monkeypatch.setattr(ICM, "_save_checkpoint", save_then_die)
    assert main(label_args(tiny_model_dir, out, "--executor", "sequential")) == 130
    monkeypatch.setattr(ICM, "_save_checkpoint", save)
    earlier = BATCHES[:BATCHES.index(victim)]
    assert set(reports(out)) == set(earlier)
    ckpt = out / "batches" / victim / "checkpoint.json"
    blob = json.loads(ckpt.read_text())
    assert blob["iteration"] == 2
    # marks what a resume carries over: a batch started afresh would not count these token-forwards
    blob["token_forwards"] += 10**6
    ckpt.write_text(json.dumps(blob))
    before = reports(out)
    capsys.readouterr()

    assert main(label_args(tiny_model_dir, out, "--executor", "ray", "--resume")) == 0
    assert capsys.readouterr().out.count("done earlier, kept") == len(earlier)
    assert {b: reports(out)[b] for b in earlier} == before  # the finished batches were not redone
    resumed = json.loads((out / "batches" / victim / "report.json").read_text())
    assert resumed["iterations"] == straight[victim]["iterations"]
    assert resumed["token_forwards"] > 10**6  # continued from the checkpoint
    for b in BATCHES[BATCHES.index(victim) + 1:]:
        assert json.loads((out / "batches" / b / "report.json").read_text())["token_forwards"] < 10**6
    assert labels_of(out) == labels_of(sequential)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_is_one_clear_error_and_writes_nothing(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "never"
    address = f"127.0.0.1:{free_port()}"
    assert main(label_args(tiny_model_dir, out, "--executor", "ray", "--ray-address", address)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"icm: error: --ray-address {address}: cannot reach a Ray cluster")
    assert not out.exists()


def test_without_ray_installed_the_error_names_the_extra(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "never"
    assert main(label_args(tiny_model_dir, out, "--executor", "ray")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['icm: error: --executor ray needs Ray, which is not installed: pip install "icm-plugin[ray]"']
    assert not out.exists()


def test_executor_flags_need_a_batch_size(tiny_model_dir, tmp_path, capsys):
    args = [a for a in label_args(tiny_model_dir, tmp_path / "x", "--executor", "ray") if a not in ("--batch-size", "4")]
    assert main(args) == 2
    assert "add --batch-size" in capsys.readouterr().err


def test_gpus_per_batch_a_local_model_takes_one_gpu_a_server_client_none(monkeypatch):
    from icm_plugin.apps.executors import RayCluster
    from icm_plugin.errors import ICMError
    from icm_plugin.method.job import ModelSpec

    cluster = object.__new__(RayCluster)
    served = ModelSpec(model_type="local-completions", model_args="base_url=http://127.0.0.1:8000/v1/completions")
    for have, spec, want in [(8.0, ModelSpec(), 1), (0.0, ModelSpec(), 0), (8.0, ModelSpec(device="cpu"), 0),
                             (8.0, served, 0), (8.0, ModelSpec(model_type="hf", model_args="pretrained=x"), 1)]:
        monkeypatch.setattr(RayCluster, "gpus", lambda self, have=have: have)
        assert cluster.gpus_per_batch(spec) == want, (have, spec)
    monkeypatch.setattr(RayCluster, "gpus", lambda self: 0.0)
    with pytest.raises(ICMError, match="has none"):
        cluster.gpus_per_batch(ModelSpec(device="cuda"))


def test_the_executor_choice_sets_the_runner_s_threads():
    from scripted import ScriptedScorer

    from icm_plugin.apps.batches import BatchRunner
    from icm_plugin.core.tasks import get_task
    from icm_plugin.errors import ICMError
    from icm_plugin.method.search import ICMConfig

    class Forkable(ScriptedScorer):
        parallel_capacity = 3

        def fork(self):
            return self

    task, cfg = get_task("facts"), ICMConfig()
    assert BatchRunner(Forkable({}), task, cfg).workers == 3
    assert BatchRunner(Forkable({}), task, cfg, executor="threads").workers == 3
    assert BatchRunner(Forkable({}), task, cfg, executor="sequential").workers == 1
    with pytest.raises(ICMError, match="ModelSpec"):
        BatchRunner(None, task, cfg, executor="ray")
    with pytest.raises(ICMError, match="not one of"):
        BatchRunner(Forkable({}), task, cfg, executor="dask")


@pytest.mark.parametrize("address", ["head", "ray://head", "head:port"])
def test_a_ray_address_without_a_port_is_refused(address):
    from icm_plugin.apps.executors import check_reachable
    from icm_plugin.errors import ICMError

    with pytest.raises(ICMError, match="is not host:port"):
        check_reachable(address)
