"""Partitions are Kafka's: a Kafka user's keys land where they expect."""

from __future__ import annotations

import pytest

from junctionbox.domain.partitioning import murmur2, partition_for


# Kafka's own vectors (clients/src/test/.../common/utils/UtilsTest.java, testMurmur2)
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_is_kafkas(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_partition_is_the_positive_hash_modulo_the_count() -> None:
    assert partition_for("21", 7) == (-973932308 & 0x7FFFFFFF) % 7
    assert partition_for("21", 1) == 0
    assert {partition_for(f"customer-{n}", 4) for n in range(100)} == {0, 1, 2, 3}
