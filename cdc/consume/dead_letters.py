"""Dead letters: messages a lane could not take, kept with their error, stack and original bytes.

In ClickHouse ``cdc.dead_letters`` (one row per message and stage) and, with a publisher, in the
Kafka topic ``cdc.dead_letters``. ``cdc dlq`` lists and replays them (:mod:`cdc.consume.dlq`).
"""

from __future__ import annotations

import base64
import json
import traceback

from cdc.ports import Message, OutRecord, Publisher, Warehouse

DEAD_LETTER_TOPIC = "cdc.dead_letters"
DEAD_LETTERS_DDL = (
    "CREATE DATABASE IF NOT EXISTS cdc",
    # one row per message and stage: the mirror and the events consumer may both give up on a message
    "CREATE TABLE IF NOT EXISTS cdc.dead_letters (topic String, partition Int32, offset Int64,"
    " key Nullable(String), value Nullable(String), error String, stack String DEFAULT '',"
    " stage LowCardinality(String), failed_at DateTime64(3, 'UTC') DEFAULT now64(3))"
    " ENGINE = ReplacingMergeTree(failed_at) ORDER BY (topic, partition, offset, stage)",
    # `cdc dlq replay` outcomes; the newest per dead letter wins
    "CREATE TABLE IF NOT EXISTS cdc.dead_letter_replays (topic String, partition Int32, offset Int64,"
    " stage LowCardinality(String), outcome LowCardinality(String), detail String,"
    " replayed_at DateTime64(3, 'UTC') DEFAULT now64(3))"
    " ENGINE = ReplacingMergeTree(replayed_at) ORDER BY (topic, partition, offset, stage)",
)


def error_summary(error: BaseException) -> tuple[str, str]:
    """(``Type: message``, the innermost frames as ``fn:line < fn:line``), following ``raise ... from``."""
    root: BaseException = error
    while root.__cause__ is not None:
        root = root.__cause__
    text = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(root.__traceback__)[-4:] or traceback.extract_tb(error.__traceback__)[-4:]
    stack = " < ".join(f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in reversed(frames))
    return text, stack


class DeadLetters:
    """Messages that could not be applied: ClickHouse ``cdc.dead_letters`` and, with a publisher,
    Kafka topic ``cdc.dead_letters`` — each with the error, a short stack, the original
    topic/partition/offset/key and the raw bytes. ``stage`` says which consumer gave up on it.
    """

    COLUMNS = ("topic", "partition", "offset", "key", "value", "error", "stack", "stage")

    def __init__(self, warehouse: Warehouse, publisher: Publisher | None = None) -> None:
        self._warehouse = warehouse
        self._publisher = publisher
        for statement in DEAD_LETTERS_DDL:
            warehouse.command(statement)

    def put(self, msg: Message, error: BaseException, stage: str) -> None:
        text, stack = error_summary(error)
        if self._publisher is not None:
            self._publisher.publish([dead_letter_record(msg, text, stack, stage)])
        row = [msg.topic, msg.partition, msg.offset, msg.key, msg.value, text, stack, stage]  # original bytes
        self._warehouse.insert("cdc", "dead_letters", self.COLUMNS, [row])


def dead_letter_record(msg: Message, error: str, stack: str, stage: str) -> OutRecord:
    """The Kafka form: JSON with the raw key and value base64-encoded (they may not be UTF-8)."""
    doc = {
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "stage": stage,
        "error": error,
        "stack": stack,
        "key_b64": base64.b64encode(msg.key).decode() if msg.key is not None else None,
        "value_b64": base64.b64encode(msg.value).decode() if msg.value is not None else None,
    }
    headers = (
        ("cdc_error", error[:500].encode()),
        ("cdc_stage", stage.encode()),
        ("cdc_origin", f"{msg.topic}[{msg.partition}]@{msg.offset}".encode()),
    )
    return OutRecord(DEAD_LETTER_TOPIC, msg.key, json.dumps(doc).encode(), headers)
