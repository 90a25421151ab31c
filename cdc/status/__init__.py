"""The observing side of the bridge: its status snapshot, warnings, text report and Prometheus metrics.

Pure, stdlib only. The running bridge builds a `StatusSnapshot` (or its `to_dict()` form) on
demand; `cdc.status.server` serves it at `/status` and `/metrics`; `cdc status` fetches
and prints it.
"""

from cdc.status.checks import GIB, Thresholds, format_bytes, format_seconds, warnings_for
from cdc.status.model import (
    SCHEMA_VERSION,
    LoadProgress,
    ReportStatus,
    SchemaNotice,
    SourceStatus,
    StatusSnapshot,
    TableNames,
    TopicLag,
    as_snapshot,
    utc_now_iso,
)
from cdc.status.prometheus import CONTENT_TYPE, escape_label_value, prometheus_text
from cdc.status.rate import RateWindow
from cdc.status.text import render_text

__all__ = [
    "CONTENT_TYPE",
    "GIB",
    "SCHEMA_VERSION",
    "LoadProgress",
    "RateWindow",
    "ReportStatus",
    "SchemaNotice",
    "SourceStatus",
    "StatusSnapshot",
    "TableNames",
    "Thresholds",
    "TopicLag",
    "as_snapshot",
    "escape_label_value",
    "format_bytes",
    "format_seconds",
    "prometheus_text",
    "render_text",
    "utc_now_iso",
    "warnings_for",
]
