"""`cdc dlq list` and `cdc dlq replay`: dead letters for a person to read, and sent back after a fix."""

from __future__ import annotations

import json
import sys

from cdc.consume.dlq import DeadLetter, list_dead_letters, replay
from cdc.ports import Publisher, Warehouse


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _preview(data: bytes | None, width: int = 60) -> str:
    if data is None:
        return "null"
    text = data.decode("utf-8", "backslashreplace")
    return text if len(text) <= width else text[: width - 1] + "…"


def dlq_list(warehouse: Warehouse, include_replayed: bool, limit: int, fmt: str) -> int:
    letters = list_dead_letters(warehouse, include_replayed, limit)
    if fmt == "json":
        for d in letters:
            out(
                json.dumps(
                    {
                        "origin": d.origin,
                        "topic": d.topic,
                        "partition": d.partition,
                        "offset": d.offset,
                        "stages": d.stages,
                        "error": d.error,
                        "stack": d.stack,
                        "key": _preview(d.key, 10**9),
                        "value": _preview(d.value, 10**9),
                        "failed_at": d.failed_at.isoformat(),
                        "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
                    }
                )
            )
        return 0
    if not letters:
        out("no dead letters" + ("" if include_replayed else " waiting for replay"))
        return 0
    for d in letters:
        state = f"replayed {d.replayed_at:%H:%M:%S}" if d.replayed_at else "pending"
        out(f"{d.failed_at:%Y-%m-%d %H:%M:%S}  {d.origin}  [{', '.join(d.stages)}] {state}")
        out(f"    error: {d.error}")
        if d.stack:
            out(f"    at:    {d.stack}")
        out(f"    key:   {_preview(d.key)}")
        out(f"    value: {_preview(d.value)}")
    return 0


def dlq_replay(warehouse: Warehouse, publisher: Publisher, topic: str | None, limit: int) -> int:
    letters: list[DeadLetter] = [
        d for d in list_dead_letters(warehouse, False, limit) if topic is None or d.topic == topic
    ]
    count = replay(warehouse, publisher, letters)
    for d in letters:
        out(f"republished {d.origin} [{', '.join(d.stages)}]")
    out(f"{count} dead letter(s) sent back through the bridge; any that fail again reappear in `cdc dlq list`")
    return 0
