"""The held-out split: which consistency groups ICM may label (the pool) and which only score models (the test set).

One rule for every task and every caller (``icm label --split pool`` and the ``icm_*`` lm-eval tasks): a group
goes to the test set when a salted SHA-256 of its group key falls below ``TEST_FRACTION``. The rule looks at
nothing but the group key, so it is deterministic, independent of file order and of which other groups are
present (adding data never moves an existing group), and never splits a group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from icm_plugin.core.examples import Example, group_key

TEST_FRACTION = 0.5
# Changing the salt re-draws every split (and invalidates every labels file made on a pool): bump only on purpose.
_SALT = "icm-plugin/pool-test-split/v1"


def is_test_group(group: str, test_fraction: float = TEST_FRACTION) -> bool:
    """True when the consistency group ``group`` (a ``core.examples.group_key``) belongs to the held-out test set."""
    digest = hashlib.sha256(f"{_SALT}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < test_fraction * 2**64


def split_pool(examples: Iterable[Example], test_fraction: float = TEST_FRACTION) -> tuple[list[Example], list[Example]]:
    """Split examples into ``(pool, test)`` by consistency group; order within each side is kept.

    The pool is what ICM may label (and what many-shot demonstrations are drawn from); the test set is only
    ever scored. Examples without a ``consistency_id`` are their own group (keyed by id). Either side may be
    empty for a very small input; callers that need both check.
    """
    pool: list[Example] = []
    test: list[Example] = []
    for ex in examples:
        (test if is_test_group(group_key(ex), test_fraction) else pool).append(ex)
    return pool, test
