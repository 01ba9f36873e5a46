"""`icm label`'s flags become the job the library runs: ICMConfig fields (--context, --scale, --orders, --paper and
the others), the ModelSpec, the hooks; a refused combination is one ICMError line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icm_plugin.cli.main import build_parser, icm_config, label_job, main
from icm_plugin.method.icm_config import ICMConfig
from icm_plugin.scoring.registry import ModelSpec


def parse(*flags: str):
    return build_parser().parse_args(["label", "--task", "facts", *flags])


@pytest.mark.parametrize(("flags", "expected"), [
    ((), ICMConfig()),
    (("--context", "loo"), ICMConfig(context="loo")),
    (("--context", "group", "--scale", "logprob"), ICMConfig(context="group", scale="logprob")),
    (("--orders", "3", "--seed", "2"), ICMConfig(orders=3, seed=2)),
    (("--paper",), ICMConfig.paper()),
    (("--paper", "--context", "group", "--alpha", "20"), ICMConfig.paper(context="group", alpha=20.0)),
    (("--paper", "--iterations", "7", "--no-force-repair", "--scale", "logprob"),
     ICMConfig.paper(iterations=7, force_repair=False, scale="logprob")),
])
def test_config_from_flags(flags, expected):
    assert icm_config(parse(*flags)) == expected


def test_paper_is_the_authors_setting():
    cfg = icm_config(parse("--paper"))
    assert (cfg.context, cfg.proposal, cfg.normalise, cfg.always_add, cfg.temperature_unit) == \
        ("loo", "example", "labelled", False, "U")
    assert icm_config(parse()).context == "group"


@pytest.mark.parametrize("flags", [("--context", "pairs"), ("--scale", "nats"), ("--orders", "0")])
def test_bad_values_are_refused_by_the_parser(flags, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(*flags)
    assert exit_.value.code == 2 and flags[0] in capsys.readouterr().err


def test_job_from_flags():
    job = label_job(parse("--model", "m", "--scorer", "reference", "--dtype", "float32", "--limit", "8", "--seed",
                          "4", "--out", "o", "--resume", "--batch-size", "4", "--memory-limit", "2GiB"), plugins=[])
    assert job.model == ModelSpec(model="m", scorer="reference", dtype="float32", memory_limit=2 * 1024 ** 3)
    assert (job.task, job.limit, job.seed, job.out, job.resume, job.batch_size, job.hooks) == \
        ("facts", 8, 4, "o", True, 4, ())


def test_split_and_push_become_hooks():
    from icm_plugin.integrations.argilla.label_hooks import PushTo
    from icm_plugin.integrations.lmeval.pool import SplitPool

    hooks = label_job(parse("--split", "pool", "--push", "review", "--api-url", "http://x")).hooks
    assert [type(h) for h in hooks] == [PushTo, SplitPool]
    assert hooks[0].dataset == "review" and hooks[0].server.api_url == "http://x" and hooks[1].split == "pool"


def test_resume_with_another_context_is_one_error_line(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["label", "--task", "facts", "--model", str(tiny_model_dir), "--limit", "4", "--iterations", "3",
            "--out", str(out)]
    assert main([*base, "--context", "loo", "--scale", "logprob", "--orders", "2"]) == 0
    config = json.loads((out / "config.json").read_text())["hyperparameters"]
    assert (config["context"], config["scale"], config["orders"]) == ("loo", "logprob", 2)
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in Path(out).iterdir() if p.is_file()}
    assert main([*base, "--resume", "--context", "group", "--scale", "logprob", "--orders", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("icm: error:") and "cannot resume" in err[0]
    assert "--context 'loo', this command has 'group'" in err[0]
    assert {p.name: p.read_bytes() for p in Path(out).iterdir() if p.is_file()} == before
