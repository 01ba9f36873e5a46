"""The lm-eval backend adapter with lm-eval's own `hf` model on the tiny model: same log-probabilities as the
native prefix scorer (max |diff| < 1e-4 nats; measured ~1e-6, fp32 batching noise), same labels for the same
seed, BOS handled as the native scorer does, clear errors for a bad model type or model args."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from icm_plugin.cli.main import main
from icm_plugin.core.loaders import load_examples
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.method.objective import context_request, loo_requests
from icm_plugin.method.search import ICM, ICMConfig
from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.lmeval_backend import LMEvalScorer, parse_model_args
from icm_plugin.scoring.prefix import PrefixSharingScorer

TASK = get_task("facts")
TOLERANCE = 1e-4  # nats, the same bound the prefix scorer is held to against the reference scorer


@pytest.fixture(scope="module")
def native(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return PrefixSharingScorer(model, AutoTokenizer.from_pretrained(tiny_model_dir), TASK.label_words)


def hf_args(folder, *extra: str) -> str:
    return ",".join([f"pretrained={folder}", "dtype=float32", "device=cpu", "batch_size=8", *extra])


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return LMEvalScorer.from_model_type("hf", hf_args(tiny_model_dir), TASK.label_words)


@pytest.fixture(scope="module")
def pool():
    return load_examples(None, TASK, 12)


def test_loo_logprobs_equal_the_native_scorer(native, backend, pool):
    rng = np.random.default_rng(0)
    for _ in range(2):
        labels = [int(y) for y in rng.integers(0, 2, len(pool))]
        _, reqs = loo_requests(TASK, pool, labels, [int(i) for i in rng.permutation(len(pool))])
        reqs.append(ScoreRequest((), TASK.prompt(pool[0])))  # no demonstrations at all
        reqs.append(context_request(TASK, pool, labels, list(range(len(pool))), 3))
        a, b = native.label_logprobs(reqs), backend.label_logprobs(reqs)
        assert np.abs(a - b).max() < TOLERANCE
        assert np.allclose(np.exp(b).sum(1), 1.0)
    assert backend.token_forwards > 0


def test_bos_is_the_native_scorers_whatever_the_tokenizer_does(tiny_model_dir, native, pool):
    # add_bos_token=False: lm-eval's tokenizer call adds no BOS, so the adapter puts the BOS text in front
    no_bos = LMEvalScorer.from_model_type("hf", hf_args(tiny_model_dir, "add_bos_token=False"), TASK.label_words)
    assert no_bos.bos_text == "<bos>"
    ids = no_bos.lm.tok_encode(no_bos.prompt(ScoreRequest((), "Question: x")))
    assert ids[0] == no_bos.lm.tokenizer.bos_token_id and ids[1] != ids[0]
    reqs = [ScoreRequest(tuple(TASK.demonstration(e, 1) for e in pool[:3]), TASK.prompt(pool[4]))]
    assert np.abs(native.label_logprobs(reqs) - no_bos.label_logprobs(reqs)).max() < TOLERANCE


def test_same_labels_as_the_native_scorer_for_the_same_seed(native, backend, pool):
    cfg = ICMConfig(seed=5, iterations=16)
    a = ICM(native, TASK, cfg).fit(pool, progress=False)
    b = ICM(backend, TASK, cfg).fit(pool, progress=False)
    assert a.labels_ == b.labels_
    assert a.U_ == pytest.approx(b.U_, abs=50 * TOLERANCE)
    assert [h["accepted"] for h in a.history_] == [h["accepted"] for h in b.history_]


def test_requests_go_out_sorted_by_demonstrations(backend, pool):
    seen = []
    real = backend.lm.loglikelihood

    def spy(instances, disable_tqdm=False):
        seen.extend(i.args[0] for i in instances[::2])
        return real(instances, disable_tqdm=disable_tqdm)

    backend.lm.loglikelihood = spy
    try:
        labels = [1, 0] * (len(pool) // 2)
        _, reqs = loo_requests(TASK, pool, labels, list(range(len(pool))))
        backend.label_logprobs(reqs)
    finally:
        del backend.lm.loglikelihood
    expected = sorted((r.demos, r.query) for r in reqs)
    assert seen == [backend.prompt(ScoreRequest(d, q)) for d, q in expected]


def test_cli_model_type_hf_writes_a_run_folder(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = ["label", "--task", "facts", "--limit", "8", "--seed", "1", "--iterations", "6", "--out", str(out),
            "--model-type", "hf", "--model-args", hf_args(tiny_model_dir)]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert report["n"] == 8 and report["token_forwards"] > 0
    assert config["model_type"] == "hf" and str(tiny_model_dir) in config["model_args"]


@pytest.mark.parametrize("model_type,model_args,message", [
    ("no-such-backend", "", "is not an lm-eval model type"),
    ("hf", "pretrained", "is not key=value"),
    ("hf", "pretrained=/nonexistent/folder-xyz", "could not build"),
])
def test_bad_backend_choices_are_clear_errors(model_type, model_args, message):
    with pytest.raises(ICMError, match=message):
        LMEvalScorer.from_model_type(model_type, model_args, TASK.label_words)


def test_model_args_use_lm_evals_parser():
    assert parse_model_args("pretrained=x,batch_size=4,add_bos_token=True") == {
        "pretrained": "x", "batch_size": 4, "add_bos_token": True}


def test_context_longer_than_the_backend_is_a_clear_error(tiny_model_dir, pool):
    short = LMEvalScorer.from_model_type("hf", hf_args(tiny_model_dir, "max_length=64"), TASK.label_words)
    reqs = [ScoreRequest(tuple(TASK.demonstration(e, 0) for e in pool), TASK.prompt(pool[0]))]
    with pytest.raises(ICMError, match="context too long"):
        short.label_logprobs(reqs)


def test_cli_model_type_hf_with_only_pretrained_labels_like_the_native_scorer(tiny_model_dir, tmp_path, monkeypatch):
    # exactly what a user types after `lm_eval --model hf --model_args pretrained=FOLDER`: no device, dtype or
    # batch size; on a machine without a GPU lm-eval's own device default must land on the CPU
    if not torch.cuda.is_available():
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    common = ["label", "--task", "facts", "--limit", "8", "--seed", "2", "--iterations", "8"]
    assert main([*common, "--out", str(tmp_path / "lmeval"), "--model-type", "hf",
                 "--model-args", f"pretrained={tiny_model_dir}"]) == 0
    assert main([*common, "--out", str(tmp_path / "native"), "--model", str(tiny_model_dir),
                 "--dtype", "float32"]) == 0  # the tiny model's own dtype, which lm-eval's hf loads by default

    def labels(run):
        return [(r["id"], r["label"]) for r in map(json.loads, (run / "labels.jsonl").read_text().splitlines())]

    assert labels(tmp_path / "lmeval") == labels(tmp_path / "native")
    assert len(labels(tmp_path / "native")) == 8
