from __future__ import annotations

import random

import pytest

from junctionbox.domain.ids import has_prefix, new_id, new_id_of


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


def _reference(millis: int, entropy: bytes) -> str:
    """Crockford base32 of the whole 128-bit ULID, five bits at a time (130 bits, 26 digits)."""
    value = (millis << 80) | int.from_bytes(entropy, "big")
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(alphabet[(value >> (125 - 5 * i)) & 31] for i in range(26))


@pytest.mark.parametrize(
    ("millis", "entropy"),
    [
        (0, b"\x00" * 10),
        ((1 << 48) - 1, b"\xff" * 10),
        (1_733_370_000_123, bytes(range(10))),
        (1_733_370_000_123, bytes(range(10, 20))),  # the same millisecond's cached time part
        (1_733_370_000_124, b"\x80" + b"\x01" * 9),
    ],
)
def test_time_and_random_parts_encode_as_the_whole_ulid(millis: int, entropy: bytes) -> None:
    assert new_id("dlv", now_ms=millis, entropy=entropy) == "dlv_" + _reference(millis, entropy)


def test_ids_from_a_random_integer_are_well_formed_and_keep_80_bits() -> None:
    made = new_id_of("dlv", (1 << 80) + 5)  # bits beyond 80 are dropped
    assert has_prefix(made, "dlv")
    assert made.endswith("0" * 15 + "5")
    assert len({new_id_of("dlv", n) for n in range(1000)}) == 1000


def test_random_parts_encode_as_the_whole_ulid() -> None:
    rng = random.Random(5)
    for _ in range(500):
        millis, entropy = rng.getrandbits(48), rng.randbytes(10)
        assert new_id("dlv", now_ms=millis, entropy=entropy) == "dlv_" + _reference(millis, entropy)
