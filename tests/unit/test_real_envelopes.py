"""Envelopes captured from the running stack (tests/fixtures/debezium, written by the Debezium runner test)."""

import json
from pathlib import Path

import pytest

from cdc.debezium.envelope import is_tombstone, parse_change
from cdc.domain.changes import Op

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
EXPECTED = {
    "order_lines__snapshot_read": Op.SNAPSHOT,
    "order_lines__insert": Op.CREATE,
    "order_lines__update": Op.UPDATE,
    "order_lines__delete": Op.DELETE,
    "order_lines__pk_change_delete": Op.DELETE,
    "order_lines__pk_change_create": Op.CREATE,
    "typed_things__snapshot_read": Op.SNAPSHOT,
    "typed_things__insert": Op.CREATE,
    "typed_things__update_replica_identity_full": Op.UPDATE,
    "typed_things__delete_replica_identity_full": Op.DELETE,
}


def _load(name: str) -> dict[str, object]:
    return dict(json.loads((FIXTURES / f"{name}.json").read_text()))


@pytest.mark.parametrize(("name", "op"), sorted(EXPECTED.items()))
def test_captured_envelopes_parse(name: str, op: Op) -> None:
    fixture = _load(name)
    raw = fixture["value_raw"]
    assert isinstance(raw, str)
    change = parse_change(raw.encode())
    assert change is not None and change.op is op
    assert change.table.topic == fixture["topic"]
    assert change.position.lsn > 0 and change.position.commit_ts_ms > 0
    assert change.position.snapshot is (op is Op.SNAPSHOT)
    key = fixture["key"]
    assert isinstance(key, dict)
    assert all(change.row[k] == v for k, v in key.items())  # the Kafka key is the row's primary key


def test_primary_key_change_is_a_delete_then_a_create_at_one_position() -> None:
    old = parse_change(str(_load("order_lines__pk_change_delete")["value_raw"]).encode())
    new = parse_change(str(_load("order_lines__pk_change_create")["value_raw"]).encode())
    assert old is not None and new is not None
    assert old.row["line_no"] != new.row["line_no"]
    assert old.position.txid == new.position.txid


def test_tombstone_fixture_is_a_tombstone() -> None:
    raw = _load("order_lines__tombstone")["value_raw"]
    assert raw is None or is_tombstone(str(raw).encode())
