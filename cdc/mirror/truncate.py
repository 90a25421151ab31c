"""TRUNCATE as a versioned operation on the mirror. Pure: finds the truncates in a batch, builds SQL.

A TRUNCATE has no row images, so ClickHouse's parse views cannot apply it; the sink does, after
the batch's rows are in. At the truncate's LSN ``L`` every current row older than ``L`` gets a
deleted version ``L`` (so the current-state view is empty at that position), and the change log
gets one ``_op = 't'`` row (key columns at their type's default, other columns NULL).

Why this is exact, whatever the order of arrival: the state table keeps, per key, the row with
the highest ``_version`` (the source LSN). Rows written at ``L' > L`` (later inserts, in this batch
or any other) are not touched and outrank the tombstone; rows older than ``L`` (also ones re-sent
after a crash) lose to it. Running it again writes the same tombstones: a replay changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.domain.changes import TableRef
from cdc.mirror.table import MirrorTable, quote
from cdc.ports import Message

_MARK = b'"op":"t"'
_SNAPSHOT_END = (b'"snapshot":"last_in_data_collection"', b'"snapshot":"last"')


@dataclass(frozen=True, slots=True)
class Truncate:
    lsn: int
    txid: int | None
    commit_ts_ms: int


def truncates(ref: TableRef, messages: Sequence[Message]) -> list[Truncate]:
    """The TRUNCATEs of ``ref`` among ``messages``, oldest first (one bytes search when there are none)."""
    values = [m.value for m in messages if m.value]
    if _MARK not in b"\n".join(values):  # one search over the batch: the usual answer is no
        return []
    found = []
    for value in values:
        if _MARK not in value:
            continue
        try:
            doc = json.loads(value)
            src = doc["source"]
            if doc.get("op") != "t" or (src.get("schema"), src.get("table")) != (ref.schema, ref.table):
                continue
            lsn, txid, ts = src["lsn"], src.get("txId"), src.get("ts_ms") or doc.get("ts_ms") or 0
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # not a valid truncate envelope: the parse view dead-letters what it cannot read
        if isinstance(lsn, int):
            found.append(Truncate(lsn, txid if isinstance(txid, int) else None, int(ts)))
    return sorted(found, key=lambda t: t.lsn)


def snapshot_ends(ref: TableRef, messages: Sequence[Message]) -> list[int]:
    """LSNs at which a snapshot of ``ref`` ended among ``messages`` (its last snapshot record).

    Every record of one snapshot carries the snapshot's LSN. A snapshot that is read again (Debezium
    starts it over when it did not finish, at a later position) must leave the mirror as that new
    snapshot saw the table: rows it did not read (deleted in between, never streamed) are removed by
    giving every row older than the snapshot a deleted version at its LSN (:func:`truncate_sql`)."""
    values = [m.value for m in messages if m.value]
    joined = b"\n".join(values)
    if not any(mark in joined for mark in _SNAPSHOT_END):
        return []
    found = []
    for value in values:
        if not any(mark in value for mark in _SNAPSHOT_END):
            continue
        try:
            src = json.loads(value)["source"]
            if (src.get("schema"), src.get("table")) == (ref.schema, ref.table) and isinstance(src["lsn"], int):
                found.append(src["lsn"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return sorted(set(found))


def truncate_sql(table: MirrorTable, t: Truncate, log: bool = True) -> list[str]:
    """Statements that empty the current state at ``t.lsn`` and (``log``) record the truncate in the change log."""
    cols = ", ".join(quote(p.name) for p in table.state_plans)
    state, changes = table.qualified("_state_"), table.qualified("_log_")
    txid = "NULL" if t.txid is None else str(int(t.txid))
    at = f"fromUnixTimestamp64Milli(toInt64({int(t.commit_ts_ms)}), 'UTC')"
    lsn = int(t.lsn)
    statements = [
        f"INSERT INTO {state} ({cols}, _version, _is_deleted, _lsn, _txid, _commit_ts, _op)"
        f" SELECT {cols}, {lsn}, 1, {lsn}, {txid}, {at}, 't'"
        f" FROM {state} FINAL WHERE _version < {lsn} AND _is_deleted = 0"
    ]
    if log:  # the log is a ReplacingMergeTree on (_lsn, key, _op): writing it twice keeps one row
        statements.append(
            f"INSERT INTO {changes} (_op, _lsn, _txid, _commit_ts, _snapshot) SELECT 't', {lsn}, {txid}, {at}, 0"
        )
    return statements
