"""The events this process's own appends announced (after their commit), kept per partition
while they are contiguous and few: a dispatcher batch from its cursor that they cover needs
no read of the log (see ``Dispatcher._dispatch_known``).

Only what is certain is kept: a partition's events from one offset on, each the next
offset. An event that does not follow the last one kept (another node appended in between,
or two appends were announced out of order) starts the partition's list again, so a batch
is never made from a log with a hole in it; the dispatcher then reads the log as usual.

Bounded: a few events per partition, a number of partitions, and their payloads' bytes in
all (events this node appends but another node dispatches are kept until a bound drops
them); reaching a bound only means the log is read.
"""

from __future__ import annotations

from typing import Final

from junctionbox.domain.events import StoredEvent

PartitionKey = tuple[int, str, int]  # (org id, stream, partition)
PER_PARTITION: Final = 64
PARTITIONS: Final = 4096
PAYLOAD_BYTES: Final = 16 * 1024 * 1024


class AnnouncedEvents:
    def __init__(
        self,
        per_partition: int = PER_PARTITION,
        partitions: int = PARTITIONS,
        payload_bytes: int = PAYLOAD_BYTES,
    ) -> None:
        self.per_partition = per_partition
        self.partitions = partitions
        self.payload_bytes = payload_bytes
        self._kept: dict[PartitionKey, list[StoredEvent]] = {}
        self._bytes = 0

    def add(self, event: StoredEvent) -> None:
        key = (event.org_id, event.stream, event.partition)
        if self._bytes + event.size > self.payload_bytes or (
            key not in self._kept and len(self._kept) >= self.partitions
        ):
            self._kept.clear()  # mostly partitions no one dispatches from here
            self._bytes = 0
        kept = self._kept.get(key)
        if kept and kept[-1].offset + 1 == event.offset:
            kept.append(event)
            if len(kept) > self.per_partition:
                self._bytes -= kept.pop(0).size
        else:
            self._bytes -= sum(e.size for e in kept or ())
            kept = self._kept[key] = [event]
        self._bytes += event.size

    def from_offset(self, key: PartitionKey, offset: int) -> list[StoredEvent]:
        """The partition's events from ``offset`` to the last one kept, every one of
        them, or none if ``offset`` is not kept."""
        kept = self._kept.get(key)
        if not kept or not kept[0].offset <= offset <= kept[-1].offset:
            return []
        return kept[offset - kept[0].offset :]

    def forget_before(self, key: PartitionKey, offset: int) -> None:
        """Drop the partition's events before ``offset`` (dispatched)."""
        kept = self._kept.get(key)
        if kept is None:
            return
        gone = kept if kept[-1].offset < offset else kept[: max(0, offset - kept[0].offset)]
        self._bytes -= sum(e.size for e in gone)
        if gone is kept:
            del self._kept[key]
        else:
            del kept[: len(gone)]
