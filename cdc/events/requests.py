"""Erasures asked for by deletes: rows of ``cdc.erasure_requests`` the events lane writes in the batch
that stores the delete's events, and the bridge removes once it erased (cdc.erasures)."""

from __future__ import annotations

from collections.abc import Sequence

from cdc.ports import Warehouse

REQUESTS = "cdc.erasure_requests"
REQUESTS_DDL = (
    "CREATE DATABASE IF NOT EXISTS cdc",
    f"CREATE TABLE IF NOT EXISTS {REQUESTS} (source String, aggregate_type String, aggregate_id String,"
    " lsn UInt64, requested_at DateTime64(3, 'UTC') DEFAULT now64(3))"
    " ENGINE = ReplacingMergeTree ORDER BY (source, aggregate_type, aggregate_id)",
)


class ErasureRequests:
    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        for statement in REQUESTS_DDL:
            warehouse.command(statement)

    def add(self, rows: Sequence[tuple[str, str, str, int]]) -> None:
        """(source, aggregate type, id, lsn of the delete) per request; a repeat is one request."""
        self._warehouse.insert("cdc", "erasure_requests", ("source", "aggregate_type", "aggregate_id", "lsn"), rows)
