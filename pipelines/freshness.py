"""How far each report trails the event store (eventual consistency, made visible). Pure: SQL over the port.

A report's build records the newest ``stored_at`` it had seen (its watermark, ``reports._watermarks``).
Events stored after it are *pending* for that report; its lag is the age of the oldest pending event —
how long a stored event has waited to reach the report — and 0 when none is pending, however long ago
the last event arrived (a quiet event store does not make a report stale).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cdc.ports import Warehouse
from pipelines.storage import EVENTS, WATERMARKS

_EXISTS = "SELECT count() FROM system.tables WHERE database = {d:String} AND name = {t:String}"
_MARKS = f"SELECT `projection`, max(watermark) FROM {WATERMARKS} GROUP BY `projection` ORDER BY `projection`"
_PENDING = (
    "SELECT count(), if(count() = 0, 0, toInt64(toUnixTimestamp64Milli(now64(3)))"
    " - toInt64(toUnixTimestamp64Milli(min(stored_at))))"
    f" FROM {EVENTS} WHERE stored_at > {{mark:DateTime64(6, 'UTC')}}"
)


@dataclass(frozen=True, slots=True)
class ReportLag:
    name: str
    watermark: dt.datetime
    pending_events: int
    lag_s: float


def report_lags(warehouse: Warehouse) -> list[ReportLag]:
    """Every report built at least once, with its watermark, pending events and lag; none before the first build."""
    for qualified in (WATERMARKS, EVENTS):
        database, _, table = qualified.partition(".")
        if not int(warehouse.query(_EXISTS, {"d": database, "t": table})[0][0]):
            return []
    lags = []
    for name, mark in warehouse.query(_MARKS):
        pending, age_ms = warehouse.query(_PENDING, {"mark": mark})[0]
        lags.append(ReportLag(str(name), _aware(mark), int(pending), max(int(age_ms), 0) / 1000))
    return lags


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
