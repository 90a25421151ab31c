import json

import pytest

from cdc.debezium.envelope import EnvelopeError, is_tombstone, parse_change
from cdc.domain.changes import Op
from tests.envelopes import envelope


def test_insert_is_parsed_with_position_and_table() -> None:
    change = parse_change(envelope("c", None, {"id": 1, "name": "a"}, lsn=42, txid=9, ts_ms=1000))
    assert change is not None
    assert change.op is Op.CREATE
    assert change.after == {"id": 1, "name": "a"}
    assert (change.table.source, change.table.schema, change.table.table) == ("src", "public", "items")
    assert change.table.topic == "src.public.items"
    assert (change.position.lsn, change.position.txid, change.position.commit_ts_ms) == (42, 9, 1000)
    assert change.position.snapshot is False


def test_snapshot_read_is_flagged() -> None:
    change = parse_change(envelope("r", None, {"id": 1}, lsn=5, snapshot="last"))
    assert change is not None and change.op is Op.SNAPSHOT and change.position.snapshot


def test_delete_identifies_row_by_before_image() -> None:
    change = parse_change(envelope("d", {"id": 3, "name": None}, None, lsn=7))
    assert change is not None and change.op is Op.DELETE
    assert change.row == {"id": 3, "name": None}


def test_changed_columns_of_update() -> None:
    change = parse_change(envelope("u", {"id": 1, "a": 1, "b": 2}, {"id": 1, "a": 1, "b": 3}, lsn=8))
    assert change is not None and change.changed_columns() == {"b"}


def test_schema_wrapped_payload_is_tolerated() -> None:
    inner = json.loads(envelope("c", None, {"id": 1}, lsn=9))
    change = parse_change(json.dumps({"schema": {}, "payload": inner}).encode())
    assert change is not None and change.after == {"id": 1}


@pytest.mark.parametrize("raw", [b"\xff\xfe not json", b"[1, 2]", b'{"op": "x", "source": {}}', b'"text"'])
def test_malformed_messages_raise_envelope_error(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_change(raw)


def test_missing_lsn_or_images_raise() -> None:
    doc = json.loads(envelope("c", None, {"id": 1}, lsn=1))
    del doc["source"]["lsn"]
    with pytest.raises(EnvelopeError, match="lsn"):
        parse_change(json.dumps(doc).encode())
    with pytest.raises(EnvelopeError, match="before"):
        parse_change(envelope("d", None, None, lsn=2))
    with pytest.raises(EnvelopeError, match="after"):
        parse_change(envelope("u", {"id": 1}, None, lsn=2))


def test_a_truncate_is_a_change_without_images_and_a_message_is_none() -> None:
    change = parse_change(envelope("t", None, None, lsn=3))
    assert change is not None and change.op is Op.TRUNCATE and change.position.lsn == 3
    assert change.before is None and change.after is None and change.row == {}
    assert parse_change(envelope("m", None, None, lsn=4)) is None


def test_tombstones() -> None:
    assert is_tombstone(None) and is_tombstone(b"")
    assert not is_tombstone(b"{}")
