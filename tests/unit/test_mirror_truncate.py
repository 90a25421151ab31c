"""TRUNCATE and snapshot ends in a batch: found per table (tables may share a topic), SQL versioned by LSN."""

import json

from cdc.domain.changes import Column, TableRef, TableSchema
from cdc.mirror.table import MirrorTable
from cdc.mirror.truncate import Truncate, snapshot_ends, truncate_sql, truncates
from cdc.ports import Message

REF = TableRef("shop", "sales", "Order Items")


def _msg(offset: int, op: str, table: str, lsn: int, snapshot: str = "false") -> Message:
    source = {"schema": "sales", "table": table, "lsn": lsn, "txId": 7, "ts_ms": 1000, "snapshot": snapshot}
    doc = {"before": None, "after": None if op == "t" else {"id": 1}, "source": source, "op": op}
    return Message("shop.sales.Order_Items", 0, offset, None, json.dumps(doc, separators=(",", ":")).encode())


def test_truncates_of_this_table_only_oldest_first() -> None:
    batch = [_msg(1, "c", "Order Items", 5), _msg(2, "t", "Order_Items", 6), _msg(3, "t", "Order Items", 9),
             _msg(4, "t", "Order Items", 8)]  # fmt: skip
    assert truncates(REF, batch) == [Truncate(8, 7, 1000), Truncate(9, 7, 1000)]
    assert truncates(REF, [_msg(1, "c", "Order Items", 5)]) == []


def test_snapshot_ends_are_found_per_table() -> None:
    batch = [_msg(1, "r", "Order Items", 4, "first"), _msg(2, "r", "Order Items", 4, "last_in_data_collection"),
             _msg(3, "r", "Order_Items", 4, "last")]  # fmt: skip
    assert snapshot_ends(REF, batch) == [4]
    assert snapshot_ends(TableRef("shop", "sales", "Order_Items"), batch) == [4]
    assert snapshot_ends(REF, [_msg(1, "c", "Order Items", 5)]) == []


def test_truncate_sql_deletes_older_rows_at_its_lsn_and_logs_it() -> None:
    schema = TableSchema(REF, (Column("id", "int4", nullable=False), Column("v", "text")), ("id",))
    state, log = truncate_sql(MirrorTable(schema, "shop"), Truncate(9, 7, 1000))
    assert "SELECT `id`, `v`, 9, 1, 9, 7," in state and "WHERE _version < 9 AND _is_deleted = 0" in state
    assert log.startswith("INSERT INTO `shop`.`_log_sales__Order Items` (_op, _lsn") and "'t', 9, 7" in log
    assert len(truncate_sql(MirrorTable(schema, "shop"), Truncate(9, None, 0), log=False)) == 1
