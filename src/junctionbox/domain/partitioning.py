"""Which partition an event goes to: Kafka's default partitioner, so keys land where a Kafka
user expects (``murmur2(key) & 0x7fffffff % partitions``). Events without a key are spread
by their id, which keeps a retried publish on the same partition.
"""

from __future__ import annotations

import struct
from functools import lru_cache

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), signed."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for k in struct.unpack_from(f"<{whole // 4}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


# Producers reuse their keys (a customer, an order): remembering recent ones saves hashing
# them again, which is pure Python.
@lru_cache(maxsize=4096)
def partition_for(key: str, partitions: int) -> int:
    if partitions <= 1:
        return 0
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
