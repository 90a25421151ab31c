"""Dead letters after the fact: list them, and replay them once the cause is fixed.

Replaying re-publishes a dead letter's original bytes to its original topic, so the running
bridge's consumers — mirror and domain events, with the translators deployed now — process
it again through the normal path. That path is idempotent (mirror rows are versioned by
LSN, event ids derive from the source position), so replaying twice changes nothing more.
Each replay is recorded in ``cdc.dead_letter_replays``; a message that fails again comes
back as a new dead letter at its new offset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.ports import OutRecord, Publisher, Warehouse

_LIST = """
SELECT d.topic, d.partition, d.offset, groupArray(d.stage), any(d.error), any(d.stack),
       any(if(isNull(d.key), NULL, hex(d.key))), any(if(isNull(d.value), NULL, hex(d.value))),
       min(d.failed_at), max(r.replayed_at)
FROM (SELECT * FROM cdc.dead_letters FINAL) AS d
LEFT JOIN (SELECT * FROM cdc.dead_letter_replays FINAL) AS r
    ON r.topic = d.topic AND r.partition = d.partition AND r.offset = d.offset AND r.stage = d.stage
GROUP BY d.topic, d.partition, d.offset
HAVING {all:UInt8} OR max(r.outcome = 'republished') = 0
ORDER BY min(d.failed_at), d.topic, d.partition, d.offset
LIMIT {limit:UInt32}
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message some consumer gave up on (``stages`` lists which), with its original bytes."""

    topic: str
    partition: int
    offset: int
    stages: tuple[str, ...]
    error: str
    stack: str
    key: bytes | None
    value: bytes | None
    failed_at: dt.datetime
    replayed_at: dt.datetime | None

    @property
    def origin(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _bytes(hex_text: str | None) -> bytes | None:
    """Raw bytes come back hex-encoded: the driver would otherwise turn non-UTF-8 values into text."""
    return None if hex_text is None else bytes.fromhex(hex_text)


def list_dead_letters(warehouse: Warehouse, include_replayed: bool = False, limit: int = 100) -> list[DeadLetter]:
    rows = warehouse.query(_LIST, {"all": int(include_replayed), "limit": limit})
    out = []
    for topic, partition, offset, stages, error, stack, key, value, failed_at, replayed_at in rows:
        replayed = replayed_at if replayed_at and replayed_at.year > 1970 else None  # LEFT JOIN default
        out.append(
            DeadLetter(
                topic,
                int(partition),
                int(offset),
                tuple(sorted(set(stages))),
                error,
                stack,
                _bytes(key),
                _bytes(value),
                failed_at,
                replayed,
            )
        )
    return out


def replay(warehouse: Warehouse, publisher: Publisher, letters: Sequence[DeadLetter]) -> int:
    """Re-publish ``letters`` to their original topics, then record the replay. Returns the count."""
    if not letters:
        return 0
    publisher.publish([OutRecord(d.topic, d.key, d.value, (("cdc_replay_of", d.origin.encode()),)) for d in letters])
    rows = [
        [d.topic, d.partition, d.offset, stage, "republished", f"to {d.topic}"] for d in letters for stage in d.stages
    ]
    warehouse.insert("cdc", "dead_letter_replays", ["topic", "partition", "offset", "stage", "outcome", "detail"], rows)
    return len(letters)
