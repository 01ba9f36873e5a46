"""Each consistency rule: what counts as a violation and which repairs it offers."""

from icm_plugin.core.examples import Example
from icm_plugin.method.consistency import make_rule


def ex(i, group, key=None):
    return Example(id=str(i), question="q", choice=f"c{i}", consistency_id=group, consistency_key=key)


def test_exactly_one_pair_flags_both_true_and_both_false():
    pool = [ex(0, "g"), ex(1, "g")]
    rule = make_rule("exactly_one", pool)
    assert rule.inconsistency([1, 0]) == 0
    assert rule.inconsistency([0, 1]) == 0
    assert rule.inconsistency([1, 1]) == 1
    assert rule.inconsistency([0, 0]) == 1
    assert rule.inconsistency([0, None]) == 0  # incomplete group: the other may still be True
    (v,) = rule.violations([1, 1])
    assert sorted(tuple(sorted(o.items())) for o in rule.repairs(v, [1, 1])) == [((0, 0), (1, 1)), ((0, 1), (1, 0))]


def test_exactly_one_group_of_three():
    pool = [ex(0, "g"), ex(1, "g"), ex(2, "g")]
    rule = make_rule("exactly_one", pool)
    assert rule.inconsistency([1, 1, 1]) == 3  # three True/True pairs
    assert rule.inconsistency([0, 0, 0]) == 1  # complete group with no True
    assert rule.inconsistency([0, 0, None]) == 0
    (v,) = rule.violations([0, 0, 0])
    repairs = rule.repairs(v, [0, 0, 0])
    assert len(repairs) == 3 and all(sum(r.values()) == 1 for r in repairs)


def test_key_rule_same_key_same_label_and_different_keys_not_both_true():
    pool = [ex(0, "g", "42"), ex(1, "g", "42"), ex(2, "g", "7")]
    rule = make_rule("key", pool)
    assert rule.inconsistency([1, 1, 0]) == 0
    assert rule.inconsistency([1, 0, 0]) == 1  # same answer, different labels
    assert rule.inconsistency([1, 1, 1]) == 2  # 7 and 42 cannot both be right (two pairs)
    assert rule.inconsistency([0, 0, 0]) == 0  # all wrong is allowed
    v = rule.violations([1, 0, 0])[0]
    assert {tuple(sorted(o.values())) for o in rule.repairs(v, [1, 0, 0])} == {(1, 1), (0, 0)}


def test_same_key_rule_allows_several_true():
    pool = [ex(0, "g", "a"), ex(1, "g", "b"), ex(2, "g", "a")]
    rule = make_rule("same_key", pool)
    assert rule.inconsistency([1, 1, 1]) == 0
    assert rule.inconsistency([1, 1, 0]) == 1


def test_groups_do_not_interact():
    pool = [ex(0, "g1"), ex(1, "g1"), ex(2, "g2"), ex(3, "g2")]
    rule = make_rule("exactly_one", pool)
    assert rule.inconsistency([1, 0, 1, 0]) == 0
    assert rule.inconsistency([1, 0, 0, 0]) == 1
    assert [v.members for v in rule.violations([1, 1, 0, 0], touching={0})] == [(0, 1)]


def test_no_rule_never_flags():
    pool = [ex(0, "g"), ex(1, "g")]
    assert make_rule("none", pool).inconsistency([1, 1]) == 0


def test_rules_never_read_gold():
    gold_true = [Example(id="0", question="q", choice="a", consistency_id="g", label=1),
                 Example(id="1", question="q", choice="b", consistency_id="g", label=1)]
    gold_false = [e.without_gold() for e in gold_true]
    for name in ("exactly_one", "key", "same_key"):
        for labels in ([1, 1], [0, 0], [1, 0]):
            assert make_rule(name, gold_true).inconsistency(labels) == make_rule(name, gold_false).inconsistency(labels)


def test_a_missing_key_is_not_a_key():
    # key-less members need not share a label, and a key-less member may be True beside a keyed one
    pool = [ex(0, "g"), ex(1, "g"), ex(2, "g", "42"), ex(3, "g", "42")]
    for name in ("key", "same_key"):
        rule = make_rule(name, pool)
        assert rule.inconsistency([1, 0, 0, 0]) == 0
        assert rule.inconsistency([1, 1, 1, 1]) == 0
        assert rule.inconsistency([0, 0, 1, 0]) == 1  # the keyed members still share their label


def test_rule_decode_leaves_key_less_members_free():
    import numpy as np

    from icm_plugin.method.consistency import rule_decode

    pool = [ex(0, "g"), ex(1, "g"), ex(2, "g", "42"), ex(3, "g", "7")]
    margins = np.array([2.0, 1.0, 0.5, -1.0])
    scores = np.stack([-np.logaddexp(0, margins), -np.logaddexp(0, -margins)], axis=1)
    assert rule_decode(scores, pool, "key") == [1, 1, 1, 0]
    assert rule_decode(scores, pool, "same_key") == [1, 1, 1, 0]
