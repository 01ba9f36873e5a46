"""Loaders: every bad input is one ICMError naming the file, record/line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icm_plugin.core.loaders import load_examples
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "icm"
CLAIMS = get_task("claims")


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_mixed_label_types_are_normalised():
    # the reference files mix bool, 0/1 and strings on purpose
    alpaca = load_examples(SHARED / "test_alpaca.json", get_task("alpaca"))
    gsm = load_examples(SHARED / "test_gsm8k.json", get_task("gsm8k"))
    assert {e.label for e in alpaca} == {0, 1} and {e.label for e in gsm} == {0, 1}
    assert len(alpaca) == 934 and len(gsm) == 2972


def test_string_labels(tmp_path):
    p = write_jsonl(tmp_path / "a.jsonl", [{"question": "q", "choice": "a", "label": "True"},
                                           {"question": "q", "choice": "b", "label": "false"}])
    assert [e.label for e in load_examples(p, CLAIMS)] == [1, 0]


def test_gsm8k_key_is_the_solutions_own_answer_never_the_reference():
    gsm = load_examples(SHARED / "test_gsm8k.json", get_task("gsm8k"), limit=40)
    raw = {(r["question"], r["cot"]): r for r in json.loads((SHARED / "test_gsm8k.json").read_text())}
    for e in gsm:
        r = raw[(e.question, e.choice)]
        assert e.consistency_key == str(r["answer"]).strip()
        assert not {"ref_cot", "ref_answer"} & set(e.to_dict())


def test_bad_label_names_file_line_and_field(tmp_path):
    p = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "choice": "a", "label": 1},
                                             {"question": "q", "choice": "b", "label": "maybe"}])
    with pytest.raises(ICMError, match=r"bad\.jsonl: line 2: field 'label'"):
        load_examples(p, CLAIMS)


def test_missing_field(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [{"question": "q"}])
    with pytest.raises(ICMError, match=r"m\.jsonl: line 1: missing field 'choice'"):
        load_examples(p, CLAIMS)


def test_missing_field_in_json_list_names_the_record(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps([{"question": "q", "choice": "a"}, {"choice": "b"}]))
    with pytest.raises(ICMError, match=r"m\.json: record 1: missing field 'question'"):
        load_examples(p, CLAIMS)


def test_comparisons_need_choice_2(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "choice": "a"}])
    with pytest.raises(ICMError, match="missing field 'choice_2'"):
        load_examples(p, get_task("comparisons"))


def test_bad_json_line(tmp_path):
    p = write_jsonl(tmp_path / "j.jsonl", [{"question": "q", "choice": "a"}, "{not json"])
    with pytest.raises(ICMError, match=r"j\.jsonl: line 2: not valid JSON"):
        load_examples(p, CLAIMS)


def test_not_an_object(tmp_path):
    p = write_jsonl(tmp_path / "o.jsonl", ["[1, 2]"])
    with pytest.raises(ICMError, match="line 1: expected a JSON object"):
        load_examples(p, CLAIMS)


def test_duplicate_ids(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"id": "x", "question": "q", "choice": "a"},
                                           {"id": "x", "question": "q", "choice": "b"}])
    with pytest.raises(ICMError, match=r"line 2: duplicate id 'x' \(also at .*line 1\)"):
        load_examples(p, CLAIMS)


def test_duplicate_content_without_ids(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "choice": "a"}, {"question": "q", "choice": "a"}])
    with pytest.raises(ICMError, match="duplicate id"):
        load_examples(p, CLAIMS)


def test_empty_pool(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text("\n")
    with pytest.raises(ICMError, match="empty"):
        load_examples(p, CLAIMS)


def test_unsupported_extension_and_missing_file(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n")
    with pytest.raises(ICMError, match="unsupported file type"):
        load_examples(p, CLAIMS)
    with pytest.raises(ICMError, match="could not load|no such"):
        load_examples(tmp_path / "nope", CLAIMS)


def test_ids_are_stable_and_independent_of_order(tmp_path):
    rows = [{"question": "q1", "choice": "a", "consistency_id": 1}, {"question": "q2", "choice": "b", "consistency_id": 2}]
    a = load_examples(write_jsonl(tmp_path / "a.jsonl", rows), CLAIMS)
    b = load_examples(write_jsonl(tmp_path / "b.jsonl", rows[::-1]), CLAIMS)
    assert {e.id: e.choice for e in a} == {e.id: e.choice for e in b}


def test_limit_keeps_whole_groups():
    exs = load_examples(None, get_task("facts"), limit=64)
    groups = {}
    for e in exs:
        groups.setdefault(e.consistency_id, []).append(e)
    assert len(exs) == 64 and all(len(g) == 2 for g in groups.values())


def test_hf_dataset_from_local_folder(tmp_path):
    import datasets

    datasets.Dataset.from_list([{"question": "q", "choice": "a", "label": True, "consistency_id": "g"},
                                {"question": "q", "choice": "b", "label": False, "consistency_id": "g"}]
                               ).save_to_disk(str(tmp_path / "ds"))
    exs = load_examples(str(tmp_path / "ds"), CLAIMS)
    assert [e.label for e in exs] == [1, 0]


def test_hub_name_offline_is_a_clear_error():
    with pytest.raises(ICMError, match="could not load as a Hugging Face dataset"):
        load_examples("no-such-org/no-such-dataset-xyz", CLAIMS)
