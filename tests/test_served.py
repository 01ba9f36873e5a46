"""Served models at full speed: prompts in flight per server in trie order, several servers, batches on each.

The real llama.cpp server runs in tests/test_backend_llamacpp.py; here the dispatch and the batch runner are
checked with a scripted scorer (search logic, no model).
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from scripted import ScriptedScorer

from icm_plugin.apps.batches import BatchRunner, merge_batches, split_by_group
from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.method.search import ICMConfig
from icm_plugin.scoring.served import InFlight, split_base_urls

TASK = get_task("facts")


def test_several_base_urls_give_one_model_args_string_per_server():
    one = "base_url=http://a:1/v1/completions,model=m,num_concurrent=4"
    assert split_base_urls(one) == [one]
    assert split_base_urls("pretrained=x") == ["pretrained=x"]
    two = "model=m,base_url=http://a:1/v1/completions|http://b:2/v1/completions,num_concurrent=4"
    assert split_base_urls(two) == ["model=m,base_url=http://a:1/v1/completions,num_concurrent=4",
                                    "model=m,base_url=http://b:2/v1/completions,num_concurrent=4"]
    with pytest.raises(ICMError, match="empty URL"):
        split_base_urls("base_url=http://a:1/v1|")


@pytest.mark.parametrize("servers,concurrency", [(1, 3), (2, 2), (3, 1)])
def test_prompts_go_to_each_server_in_one_block_in_order_with_at_most_concurrency_at_once(servers, concurrency):
    lock = threading.Lock()
    started: dict[int, list[int]] = defaultdict(list)
    now: dict[int, int] = defaultdict(int)
    peak: dict[int, int] = defaultdict(int)

    def call(server: int, item: int) -> int:
        with lock:
            started[server].append(item)
            now[server] += 1
            peak[server] = max(peak[server], now[server])
        time.sleep(0.01)
        with lock:
            now[server] -= 1
        return item * item

    items = list(range(23))
    assert InFlight(servers, concurrency).map(call, items) == [i * i for i in items]
    blocks = [started[s] for s in range(servers)]
    assert sorted(i for b in blocks for i in b) == items
    for block in blocks:
        assert block == list(range(block[0], block[0] + len(block)))  # contiguous: its prefixes stay shared
        assert len(block) >= len(items) // servers
    assert all(peak[s] == concurrency for s in range(servers))


def test_a_failed_prompt_stops_the_rest_from_being_sent():
    calls = []

    def call(server: int, item: int) -> int:
        calls.append(item)
        if item == 0:
            raise ICMError("cannot reach the server")
        time.sleep(0.01)
        return item

    with pytest.raises(ICMError, match="cannot reach"):
        InFlight(1, 2).map(call, list(range(50)))
    time.sleep(0.1)
    assert len(calls) < 10


class Replicated(ScriptedScorer):
    """A scripted scorer standing for one search's view of several servers: ``replicas`` are its servers."""

    def __init__(self, truth, name: str = "all", servers: int = 0):
        super().__init__(truth, herd=1.0)
        self.server = name
        self.batches_seen: list = []
        self._replicas = [Replicated(truth, f"s{k}") for k in range(servers)]

    @property
    def replicas(self):
        return self._replicas or [self]

    def fork(self):
        twin = Replicated(self.truth, self.server)
        twin.batches_seen = self.batches_seen  # the server's log, shared by its forks
        return twin

    def label_logprobs(self, requests):
        self.batches_seen.append(threading.current_thread().name)
        time.sleep(0.002)
        return super().label_logprobs(requests)


def pairs_pool(n_groups: int) -> list[Example]:
    return [Example(id=f"g{g}-{slot}", question=f"Question {g}?", choice=f"answer {g}.{slot}",
                    consistency_id=f"g{g}", label=int(slot == g % 2)) for g in range(n_groups) for slot in range(2)]


def run(scorer, pool, root: Path) -> list[tuple[str, int]]:
    batches = split_by_group(pool, 8)
    summaries = BatchRunner(scorer, TASK, ICMConfig(seed=3, iterations=12)).run(batches, {}, root / "batches")
    merge_batches(root, pool, batches, summaries, base={"alpha": 50.0})
    return [(r["id"], r["label"]) for r in map(json.loads, (root / "labels.jsonl").read_text().splitlines())]


def test_batches_run_on_every_server_at_once_and_label_as_one_server_does(tmp_path):
    pool = pairs_pool(16)  # 32 examples -> 4 batches of 8
    truth = {TASK.prompt(e): e.label for e in pool}
    alone = run(ScriptedScorer(truth, herd=1.0), pool, tmp_path / "one")
    spread = Replicated(truth, servers=2)
    runner = BatchRunner(spread, TASK, ICMConfig(seed=3, iterations=12))
    assert runner.workers == 2
    assert run(spread, pool, tmp_path / "two") == alone
    for server in spread.replicas:
        assert server.batches_seen, f"server {server.server} got no batch"
