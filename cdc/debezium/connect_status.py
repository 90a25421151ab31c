"""Reading Kafka Connect's answers about a Debezium connector: pure, stdlib only.

What a failed task's trace means (with a hint for the usual causes), whether the committed
source offset is past the initial snapshot, and which configuration strings are secrets that
must be masked in every message built from Connect's answers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cdc.debezium.config import redacted

_MASK = "********"
_IN_SNAPSHOT = frozenset({"true", "initial", "blocking"})  # `snapshot` offset values of a running snapshot
_HINTS = {
    "wal_level": "set wal_level=logical in postgresql.conf and restart PostgreSQL",
    "No table filters found for filtered publication": "none of the captured tables exist",
    "password authentication failed": "check the user and password in CDC_SOURCE_DSN",
    "UnknownHostException": "the DSN's host must resolve from inside the Kafka Connect container",
    "Connection refused": "Kafka Connect cannot reach PostgreSQL at the DSN's host and port",
    "is active for PID": "another connector or bridge holds the replication slot; stop it first",
    "Failed to find any class that implements Connector": "the Connect image lacks the Debezium "
    "PostgreSQL connector: use quay.io/debezium/connect",
}


def secret_values(props: Mapping[str, str]) -> list[str]:
    """The strings `redacted` hides in `props`: password-like values and secrets inside keys."""
    found: list[str] = []
    for key, value in props.items():
        ((masked_key, masked_value),) = redacted({key: value}).items()
        if masked_value != value and value:
            found.append(value)
        if masked_key != key:
            found.append(key[len(os.path.commonprefix([key, masked_key])) :])
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _MASK)
    return text


def describe_trace(trace: str) -> str:
    """First line of a Java stack trace, its deepest `Caused by:` line, and a hint when one applies."""
    lines = [line.strip() for line in trace.strip().splitlines() if line.strip()]
    if not lines:
        return "no trace reported"
    text = lines[0][:500]
    causes = [line for line in lines if line.startswith("Caused by:")]
    if causes and causes[-1] != lines[0]:
        text += f" ({causes[-1][:300]})"
    hints = [hint for needle, hint in _HINTS.items() if needle in trace]
    return f"{text}; hint: {'; '.join(hints)}" if hints else text


def snapshot_state(offsets: Mapping[str, Any]) -> bool | None:
    """From `GET /connectors/<name>/offsets`: True when the committed position is past the snapshot,
    False while snapshotting, None before any offset is committed.

    Debezium's PostgreSQL offset carries `snapshot` (`INITIAL`; `true` before 3.x) with
    `last_snapshot_record`/`snapshot_completed` while a snapshot runs, and only LSNs afterwards.
    """
    entries = [e.get("offset") or {} for e in offsets.get("offsets") or [] if isinstance(e, Mapping)]
    if not entries:
        return None
    offset = entries[-1]
    if str(offset.get("snapshot", "false")).lower() not in _IN_SNAPSHOT:
        return True
    return offset.get("last_snapshot_record") is True or offset.get("snapshot_completed") is True
