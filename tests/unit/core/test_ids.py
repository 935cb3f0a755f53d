from __future__ import annotations

import pytest

from junctionbox.domain.ids import has_prefix, new_id


def test_ids_carry_their_type_and_sort_by_time() -> None:
    earlier = new_id("evt", now_ms=1_700_000_000_000)
    later = new_id("evt", now_ms=1_700_000_000_001)
    assert earlier.startswith("evt_")
    assert len(earlier) == 4 + 26
    assert earlier < later
    assert has_prefix(earlier, "evt")
    assert not has_prefix(earlier, "int")


def test_same_millisecond_ids_differ() -> None:
    ids = {new_id("dlv", now_ms=5) for _ in range(1000)}
    assert len(ids) == 1000


def test_entropy_is_used_exactly() -> None:
    assert new_id("x" * 2, now_ms=0, entropy=b"\x00" * 10) == "xx_" + "0" * 26
    assert new_id("xx", now_ms=0, entropy=b"\xff" * 10).endswith("Z" * 16)


@pytest.mark.parametrize("prefix", ["", "E", "evt1", "toolongprefix", "ev-t"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id(prefix)
