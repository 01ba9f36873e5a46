"""The packaged default job, `icm label --task facts`, gives the labels it gave before tasks became files
(issue 20): the same prompts and log-probabilities, hence the same search, step by step.

PINNED was printed by the code at 41b9bb6 (the Python task constants) on this project's 2-core Intel Xeon with
AVX-512 BF16, where `--dtype auto` is bfloat16: `icm label --task facts` (32 of the packaged claims, seed 0,
default ICMConfig), U = 1.9327312707901, 107,346 token-forwards. bfloat16 is named here so that a machine whose
`auto` is float32 runs the same arithmetic (slower there: emulated bfloat16).
"""

from __future__ import annotations

import json

import pytest

from icm_plugin.cli.main import main

PINNED = {
    "facts-capital-denmark-a": 1, "facts-capital-denmark-b": 0, "facts-capital-colombia-a": 1,
    "facts-capital-colombia-b": 0, "facts-capital-nigeria-a": 1, "facts-capital-nigeria-b": 0,
    "facts-capital-new-zealand-a": 0, "facts-capital-new-zealand-b": 1, "facts-continent-brazil-a": 0,
    "facts-continent-brazil-b": 1, "facts-continent-germany-a": 0, "facts-continent-germany-b": 1,
    "facts-animal-class-frog-a": 0, "facts-animal-class-frog-b": 1, "facts-fruit-veg-pear-a": 1,
    "facts-fruit-veg-pear-b": 0, "facts-state-water-a": 0, "facts-state-water-b": 1, "facts-materials-pencil-a": 1,
    "facts-materials-pencil-b": 0, "facts-science-photosynthesis-gas-a": 1, "facts-science-photosynthesis-gas-b": 0,
    "facts-colours-blue-yellow-a": 0, "facts-colours-blue-yellow-b": 1, "facts-colours-red-blue-a": 0,
    "facts-colours-red-blue-b": 1, "facts-numbers-minutes-hour-a": 1, "facts-numbers-minutes-hour-b": 0,
    "facts-numbers-days-february-a": 1, "facts-numbers-days-february-b": 0, "facts-arithmetic-10-minus-3-a": 0,
    "facts-arithmetic-10-minus-3-b": 1,
}
PINNED_U = 1.9327312707901


@pytest.mark.slow
def test_the_default_facts_job_gives_the_labels_it_gave_before_task_files(tmp_path):
    out = tmp_path / "facts"
    assert main(["label", "--task", "facts", "--dtype", "bfloat16", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert {r["id"]: r["label"] for r in rows} == PINNED
    assert json.loads((out / "report.json").read_text())["U"] == pytest.approx(PINNED_U, abs=1e-9)
