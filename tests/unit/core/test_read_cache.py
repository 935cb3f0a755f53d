"""ReadCache (short-lived read caches) and batch event ids."""

from __future__ import annotations

import asyncio

from junctionbox.domain.ids import has_prefix
from junctionbox.services.event_log import new_event_ids
from junctionbox.services.read_cache import ReadCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl_and_none_is_a_value() -> None:
    clock = Clock()
    cache: ReadCache[str, int | None] = ReadCache(5.0, clock=clock)
    cache.put("a", 1, cache.generation)
    cache.put("none", None, cache.generation)
    assert cache.get("a") == (1,)
    assert cache.get("none") == (None,)
    assert cache.get("missing") is None
    clock.now += 5.0
    assert cache.get("a") is None
    assert len(cache) == 1  # the expired entry read was dropped


def test_a_value_read_before_an_invalidation_is_not_kept() -> None:
    cache: ReadCache[str, int] = ReadCache(5.0)
    generation = cache.generation  # a reader starts reading ...
    cache.invalidate()  # ... a write commits meanwhile ...
    cache.put("a", 1, generation)  # ... and what the reader read is stale
    assert cache.get("a") is None
    cache.put("a", 2, cache.generation)
    assert cache.get("a") == (2,)


def test_invalidate_can_drop_only_matching_entries_and_size_is_bounded() -> None:
    cache: ReadCache[str, int] = ReadCache(5.0, size=3)
    for name, value in (("a", 1), ("b", 2)):
        cache.put(name, value, cache.generation)
    cache.invalidate(lambda key, _: key == "a")
    assert (cache.get("a"), cache.get("b")) == (None, (2,))
    for n in range(10):
        cache.put(f"k{n}", n, cache.generation)
    assert len(cache) <= 3


def test_batch_event_ids_are_well_formed_distinct_and_ordered() -> None:
    assert new_event_ids(0) == []
    for count in (1, 7, 1000):
        ids = new_event_ids(count)
        assert len(set(ids)) == count
        assert all(has_prefix(i, "evt") for i in ids)
        assert ids == sorted(ids)
    assert set(new_event_ids(50)).isdisjoint(new_event_ids(50))


class Reads:
    """A loader that counts its calls and returns when released."""

    def __init__(self, value: object = "v") -> None:
        self.calls = 0
        self.value = value
        self.release = asyncio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


async def test_concurrent_misses_share_one_read() -> None:
    cache: ReadCache[str, object] = ReadCache(5.0)
    reads = Reads()
    waiting = [asyncio.create_task(cache.load("k", reads)) for _ in range(50)]
    await asyncio.sleep(0)
    reads.release.set()
    assert await asyncio.gather(*waiting) == ["v"] * 50
    assert reads.calls == 1
    assert cache.get("k") == ("v",)


async def test_a_caller_giving_up_does_not_cancel_the_read_for_the_others() -> None:
    cache: ReadCache[str, object] = ReadCache(5.0)
    reads = Reads()
    first = asyncio.create_task(cache.load("k", reads))
    second = asyncio.create_task(cache.load("k", reads))
    await asyncio.sleep(0)
    first.cancel()
    reads.release.set()
    assert await second == "v"
    assert first.cancelled()


async def test_a_failed_read_reaches_every_caller_and_is_not_kept() -> None:
    cache: ReadCache[str, object] = ReadCache(5.0)
    reads = Reads(RuntimeError("db down"))
    callers = [asyncio.create_task(cache.load("k", reads)) for _ in range(3)]
    await asyncio.sleep(0)
    reads.release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert cache.get("k") is None
    reads.value, reads.release = "again", asyncio.Event()
    reads.release.set()
    assert await cache.load("k", reads) == "again"  # the next caller reads anew


async def test_keep_decides_and_invalidation_starts_a_new_read() -> None:
    cache: ReadCache[str, object] = ReadCache(5.0)
    missing = Reads(None)
    missing.release.set()
    assert await cache.load("k", missing, keep=lambda v: v is not None) is None
    assert cache.get("k") is None  # absence not kept
    old = Reads("old")
    before = asyncio.create_task(cache.load("j", old))
    await asyncio.sleep(0)
    cache.invalidate()  # e.g. a revocation committed while the read was under way
    new = Reads("new")
    new.release.set()
    assert await cache.load("j", new) == "new"  # does not join the older read
    old.release.set()
    assert await before == "old"
    assert cache.get("j") == ("new",)  # the older read's value is not kept
