"""The packaged default job, `icm label --task facts`, gives the labels it gave when they were pinned.

PINNED was printed by `icm label --task facts --dtype bfloat16` at the commit that added this pin (16 of the
packaged claims, seed 0, default ICMConfig) on this project's 2-core Intel Xeon with AVX-512 BF16: U =
2.0450413227081303, 4,065 token-forwards, the search converged after its start. bfloat16 is named here so that a
machine whose `auto` is float32 runs the same arithmetic (slower there: emulated bfloat16).

The pin before it (code at 41b9bb6, kept through the task-file rewrite: 32 claims, U 1.9327312707901, 107,346
token-forwards) changed by design, three times at once: the search works on the pool in an order drawn from the
seed and the ids, not the file's (#21 item 3); it starts from the model's own labels, zero-shot + rule then
bootstrap rounds, not from 8 random ones (#21 item 1); and the default job labels 16 claims, not 32, so a fresh
machine shows labels in about three minutes (#23 item 2).
"""

from __future__ import annotations

import json

import pytest

from icm_plugin.cli.main import main

PINNED = {
    "facts-capital-denmark-a": 1, "facts-capital-denmark-b": 0, "facts-capital-new-zealand-a": 1,
    "facts-capital-new-zealand-b": 0, "facts-animal-class-frog-a": 0, "facts-animal-class-frog-b": 1,
    "facts-fruit-veg-pear-a": 1, "facts-fruit-veg-pear-b": 0, "facts-state-water-a": 0, "facts-state-water-b": 1,
    "facts-numbers-minutes-hour-a": 1, "facts-numbers-minutes-hour-b": 0, "facts-numbers-days-february-a": 0,
    "facts-numbers-days-february-b": 1, "facts-arithmetic-10-minus-3-a": 0, "facts-arithmetic-10-minus-3-b": 1,
}
PINNED_U = 2.0450413227081303


@pytest.mark.slow
def test_the_default_facts_job_gives_the_pinned_labels(tmp_path):
    out = tmp_path / "facts"
    assert main(["label", "--task", "facts", "--dtype", "bfloat16", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert {r["id"]: r["label"] for r in rows} == PINNED
    assert json.loads((out / "report.json").read_text())["U"] == pytest.approx(PINNED_U, abs=1e-9)
