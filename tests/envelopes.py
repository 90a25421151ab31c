"""Builders for Debezium JSON envelopes (schemas disabled), shaped like what the connector emits."""

from __future__ import annotations

import json
from typing import Any


def envelope(
    op: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    lsn: int,
    table: str = "items",
    schema: str = "public",
    source: str = "src",
    txid: int = 700,
    ts_ms: int = 1_764_000_000_000,
    snapshot: str = "false",
) -> bytes:
    doc = {
        "before": before,
        "after": after,
        "source": {
            "version": "3.6.3.Final",
            "connector": "postgresql",
            "name": source,
            "ts_ms": ts_ms,
            "snapshot": snapshot,
            "db": source,
            "sequence": json.dumps([None, str(lsn)]),
            "schema": schema,
            "table": table,
            "txId": txid,
            "lsn": lsn,
            "xmin": None,
        },
        "transaction": None,
        "op": op,
        "ts_ms": ts_ms + 5,
    }
    return json.dumps(doc).encode()
