"""Pins the packaged facts data set (icm_plugin/data/facts.jsonl) and the script that writes it."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from icm_plugin.core.loaders import load_examples, packaged_data_path
from icm_plugin.core.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "make_facts.py"
FIELDS = {"id", "question", "choice", "label", "consistency_id", "consistency_key", "category"}


def _load_script():
    spec = importlib.util.spec_from_file_location("make_facts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records() -> list[dict]:
    path = packaged_data_path()
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def groups(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        out[r["consistency_id"]].append(r)
    return dict(out)


def _family(record: dict) -> str:
    # "bare": the claim is the answer alone; otherwise one of the sentence templates
    return "bare" if record["choice"] == record["consistency_key"] else "sentence"


def test_file_is_exactly_what_the_script_writes() -> None:
    make_facts = _load_script()
    expected = make_facts.render_jsonl(make_facts.build_records())
    assert packaged_data_path().read_text(encoding="utf-8") == expected, "re-run python scripts/make_facts.py"
    # and the script is deterministic
    assert make_facts.render_jsonl(make_facts.build_records()) == expected


def test_size_and_fields(records: list[dict], groups: dict[str, list[dict]]) -> None:
    assert len(records) >= 300
    assert len(groups) >= 150
    for r in records:
        assert set(r) == FIELDS, r
        assert r["label"] in (0, 1)
        for key in FIELDS - {"label"}:
            assert isinstance(r[key], str) and r[key].strip(), (key, r)
        assert r["question"].endswith("?")


def test_ids_unique_and_scoped_to_their_group(records: list[dict]) -> None:
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    for r in records:
        assert r["id"].startswith(f"facts-{r['consistency_id']}-"), r["id"]


def test_groups_are_contiguous_and_distinct(records: list[dict]) -> None:
    # each group's records are adjacent and its id never reappears later: no two groups share an id
    order = [r["consistency_id"] for r in records]
    runs = [cid for i, cid in enumerate(order) if i == 0 or order[i - 1] != cid]
    assert len(runs) == len(set(runs))


def test_every_group_has_one_true_and_one_false(groups: dict[str, list[dict]]) -> None:
    for cid, members in groups.items():
        assert len(members) == 2, cid
        assert sorted(m["label"] for m in members) == [0, 1], cid
        assert len({m["question"] for m in members}) == 1, cid
        assert len({m["category"] for m in members}) == 1, cid
        keys = [m["consistency_key"] for m in members]
        assert keys[0] != keys[1], cid
        for m in members:
            assert m["consistency_key"] in m["choice"], m
        assert len({_family(m) for m in members}) == 1, f"{cid}: both candidates must share one template"


def test_template_families_do_not_predict_the_label(records: list[dict]) -> None:
    table = Counter((r["label"], _family(r)) for r in records)
    for family in ("bare", "sentence"):
        assert table[(1, family)] > 0 and table[(0, family)] > 0, table
        assert table[(1, family)] == table[(0, family)], table


def test_true_candidate_first_in_about_half_the_groups(records: list[dict]) -> None:
    first: dict[str, int] = {}
    for r in records:
        first.setdefault(r["consistency_id"], r["label"])
    share = sum(first.values()) / len(first)
    assert 0.40 <= share <= 0.60, share


def test_categories(records: list[dict]) -> None:
    per_cat = Counter(r["category"] for r in records)
    assert per_cat["capitals"] >= 80 and per_cat["continents"] >= 50
    assert len(per_cat) >= 10


def test_loads_as_the_default_facts_pool(records: list[dict]) -> None:
    examples = load_examples(None, get_task("facts"))
    assert len(examples) == len(records)
    assert [e.id for e in examples] == [r["id"] for r in records]
    assert all(e.label in (0, 1) and e.consistency_id and e.consistency_key for e in examples)
