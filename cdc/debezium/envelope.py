"""Parse Debezium's JSON change envelope (schemas disabled) into :class:`RowChange`.

Pure (the standard library, and orjson through :mod:`cdc.jsontext`). A message that cannot
be understood raises :class:`EnvelopeError` so the caller can route it to dead letters with the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cdc import jsontext
from cdc.domain.changes import Op, RowChange, SourceMessage, SourcePosition, TableRef
from cdc.errors import BadMessage

_ROW_OPS = {"r": Op.SNAPSHOT, "c": Op.CREATE, "u": Op.UPDATE, "d": Op.DELETE, "t": Op.TRUNCATE}


class EnvelopeError(BadMessage):
    """A change message that is not a valid Debezium row-change envelope."""


_YEAR_10000_MS = 253_402_300_800_000


def is_tombstone(value: bytes | None) -> bool:
    """Debezium follows a delete with a null-valued record for log compaction."""
    return value is None or len(value) == 0


def parse_change(value: bytes | str) -> RowChange | None:
    """Parse one change-topic value. Returns None for logical-decoding messages; a TRUNCATE is a
    change with ``op`` TRUNCATE and no row images."""
    return envelope_to_change(_document(value))


def parse_record(value: bytes | str) -> RowChange | SourceMessage:
    """A change-topic or message-topic value: a row change, or a logical-decoding message."""
    doc = _document(value)
    if doc.get("op") == "m":
        return envelope_to_message(doc)
    change = envelope_to_change(doc)
    assert change is not None
    return change


def _document(value: bytes | str) -> dict[str, Any]:
    try:
        doc = jsontext.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EnvelopeError(f"not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise EnvelopeError(f"envelope must be a JSON object, got {type(doc).__name__}")
    if "payload" in doc and "op" not in doc and isinstance(doc["payload"], dict):
        doc = doc["payload"]  # tolerate converters with schemas enabled
    return doc


def envelope_to_message(doc: dict[str, Any]) -> SourceMessage:
    """An ``op: m`` envelope: ``message.prefix`` and ``message.content`` (bytes, base64 in JSON)."""
    source, message = doc.get("source"), doc.get("message")
    if not isinstance(source, dict) or not isinstance(source.get("name"), str):
        raise EnvelopeError("message without a 'source' block naming its source")
    if not isinstance(message, dict) or not isinstance(message.get("prefix"), str):
        raise EnvelopeError("message without 'message.prefix'")
    content = message.get("content")
    if not isinstance(content, str):
        raise EnvelopeError("message without 'message.content'")
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as e:
        raise EnvelopeError(f"message content is not base64: {e}") from e
    position = _position(source, doc)
    return SourceMessage(source["name"], message["prefix"], raw, position, transactional=position.txid is not None)


def envelope_to_change(doc: dict[str, Any]) -> RowChange | None:
    op_code = doc.get("op")
    if op_code == "m":
        return None
    op = _ROW_OPS.get(op_code) if isinstance(op_code, str) else None
    if op is None:
        raise EnvelopeError(f"unknown op {op_code!r}")
    source = doc.get("source")
    if not isinstance(source, dict):
        raise EnvelopeError("missing 'source' block")
    before, after = doc.get("before"), doc.get("after")
    _check_images(op, before, after)
    return RowChange(table=_table_ref(source), op=op, before=before, after=after, position=_position(source, doc))


def _check_images(op: Op, before: Any, after: Any) -> None:
    for name, image in (("before", before), ("after", after)):
        if image is not None and not isinstance(image, dict):
            raise EnvelopeError(f"'{name}' must be an object or null")
    if op is Op.TRUNCATE:
        return
    if op is Op.DELETE and before is None:
        raise EnvelopeError("delete without a 'before' image")
    if op is not Op.DELETE and after is None:
        raise EnvelopeError(f"op {op.value!r} without an 'after' image")


def _table_ref(source: dict[str, Any]) -> TableRef:
    name, schema, table = source.get("name"), source.get("schema"), source.get("table")
    if not (isinstance(name, str) and isinstance(schema, str) and isinstance(table, str)):
        raise EnvelopeError("'source' lacks name/schema/table")
    return TableRef(name, schema, table)


def _position(source: dict[str, Any], doc: dict[str, Any]) -> SourcePosition:
    lsn = source.get("lsn")
    if not isinstance(lsn, int) or lsn < 0:
        raise EnvelopeError(f"'source.lsn' must be a non-negative integer, got {lsn!r}")
    txid = source.get("txId")
    ts_ms = source.get("ts_ms", doc.get("ts_ms"))
    if not isinstance(ts_ms, int):
        raise EnvelopeError("'source.ts_ms' missing")
    if not 0 <= ts_ms < _YEAR_10000_MS:
        raise EnvelopeError(f"'source.ts_ms' {ts_ms} is not a commit time (milliseconds since 1970)")
    snapshot = source.get("snapshot") not in (None, False, "false")
    return SourcePosition(lsn=lsn, txid=txid if isinstance(txid, int) else None, commit_ts_ms=ts_ms, snapshot=snapshot)
