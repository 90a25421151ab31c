"""Debezium's records to Kafka inside the JVM: a ``ChangeConsumer`` over a Java ``KafkaProducer``.

Records never become Python strings: Debezium's Java ``String`` key and value go straight to
the producer. A batch is marked processed only after the broker acknowledged all of it and, with
a :class:`~cdc.debezium.gate.DurabilityGate`, only once every lane has made it durable in
ClickHouse (so Debezium's stored position, and the slot, never pass an undurable change).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jpype

from cdc.debezium.config import producer_properties
from cdc.debezium.gate import Batch, DurabilityGate
from cdc.debezium.jvm import java_properties, override, root_message
from cdc.errors import CaptureError

# Source-block markers of snapshot records that are not the snapshot's final one.
_IN_SNAPSHOT = tuple(
    f'"snapshot":"{mark}","db"' for mark in ("true", "first", "first_in_data_collection", "last_in_data_collection")
)
_PRODUCER = "org.apache.kafka.clients.producer.KafkaProducer"
_RECORD = "org.apache.kafka.clients.producer.ProducerRecord"
_TOPIC_PARTITION = "org.apache.kafka.common.TopicPartition"


def start_producer(bootstrap_servers: str, client_id: str, overrides: dict[str, str]) -> Any:
    settings = producer_properties(bootstrap_servers, client_id, overrides)
    producer_class = jpype.JClass(_PRODUCER)
    try:
        return producer_class(java_properties(settings))
    except jpype.JException as e:
        raise CaptureError(f"cannot create Kafka producer for {bootstrap_servers}: {root_message(e)}") from e


class CaptureStatus:
    """State shared between the engine thread (callbacks) and the caller."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.closing = threading.Event()  # the runner is closing the engine: an interrupted batch is no failure
        self.error: CaptureError | None = None
        self.records_produced = 0
        self.batches = 0
        self.last_batch_monotonic: float | None = None
        self.snapshot_delivered = False

    def fail(self, message: str) -> None:
        with self.lock:
            if self.error is None:
                self.error = CaptureError(message)
        self.started.set()


def _past_snapshot(value: Any) -> bool:
    """Whether a record (the last of an acked batch) shows every snapshot record was sent.

    Records arrive in order and the final snapshot record is marked `"snapshot":"last"`,
    so a batch ending in anything but an earlier snapshot record means the snapshot is in Kafka.
    """
    if value is None:
        return False
    return not any(value.contains(mark) for mark in _IN_SNAPSHOT)


class _JavaBatchOps:
    """Per-record work done inside the JVM: one JPype call per batch instead of several per record.

    Method handles composed here become Java `Function`/`Consumer` objects
    (`MethodHandleProxies`), so `List.forEach`/`stream().map` run without entering Python.
    """

    def __init__(self, producer: Any) -> None:
        j = jpype.JClass
        handles, types = j("java.lang.invoke.MethodHandles"), j("java.lang.invoke.MethodType")
        self._proxies = j("java.lang.invoke.MethodHandleProxies")
        self._lookup = handles.publicLookup()
        self._to_list = j("java.util.stream.Collectors").toList()
        obj, text = j("java.lang.Object").class_, j("java.lang.String").class_
        event, record = j("io.debezium.engine.ChangeEvent").class_, j(_RECORD).class_
        getter = self._lookup.findVirtual
        new_record = self._lookup.findConstructor(record, types.methodType(j("java.lang.Void").TYPE, text, obj, obj))
        # event -> new ProducerRecord(event.destination(), event.key(), event.value())
        to_record = handles.permuteArguments(
            handles.filterArguments(
                new_record,
                0,
                getter(event, "destination", types.methodType(text)),
                getter(event, "key", types.methodType(obj)),
                getter(event, "value", types.methodType(obj)),
            ),
            types.methodType(record, event),
            0,
            0,
            0,
        )
        send = getter(j(_PRODUCER).class_, "send", types.methodType(j("java.util.concurrent.Future").class_, record))
        self.send = self._proxy(
            "java.util.function.Function", handles.filterReturnValue(to_record, send.bindTo(producer))
        )
        future_get = getter(j("java.util.concurrent.Future").class_, "get", types.methodType(obj))
        self.await_ack = self._proxy("java.util.function.Consumer", future_get)
        self._acked = self._proxy("java.util.function.Function", future_get)
        self._offsets = self._offsets_collector(j, handles, types, getter)
        self._mark = getter(
            j("io.debezium.engine.DebeziumEngine$RecordCommitter").class_,
            "markProcessed",
            types.methodType(j("java.lang.Void").TYPE, obj),
        )

    def _offsets_collector(self, j: Any, handles: Any, types: Any, getter: Any) -> Any:
        """Collects acked ``RecordMetadata`` into {TopicPartition: highest offset}, inside the JVM."""
        text, long, integer = j("java.lang.String").class_, j("java.lang.Long").TYPE, j("java.lang.Integer").TYPE
        meta, tp = j("org.apache.kafka.clients.producer.RecordMetadata").class_, j(_TOPIC_PARTITION).class_
        new_tp = self._lookup.findConstructor(tp, types.methodType(j("java.lang.Void").TYPE, text, integer))
        # meta -> new TopicPartition(meta.topic(), meta.partition())
        to_tp = handles.permuteArguments(
            handles.filterArguments(
                new_tp,
                0,
                getter(meta, "topic", types.methodType(text)),
                getter(meta, "partition", types.methodType(integer)),
            ),
            types.methodType(tp, meta),
            0,
            0,
        )
        offset = getter(meta, "offset", types.methodType(long))
        highest = self._lookup.findStatic(j("java.lang.Math").class_, "max", types.methodType(long, long, long))
        return j("java.util.stream.Collectors").toMap(
            self._proxy("java.util.function.Function", to_tp),
            self._proxy("java.util.function.Function", offset),
            self._proxy("java.util.function.BinaryOperator", highest),
        )

    def offsets(self, futures: Any) -> dict[tuple[str, int], int]:
        """Wait for every ack (raises if a record failed); the highest offset per partition."""
        acked = futures.stream().map(self._acked).collect(self._offsets)
        return {(str(e.getKey().topic()), int(e.getKey().partition())): int(e.getValue()) for e in acked.entrySet()}

    def _proxy(self, interface: str, handle: Any) -> Any:
        return self._proxies.asInterfaceInstance(jpype.JClass(interface).class_, handle)

    def marker(self, committer: Any) -> Any:
        """A Java Consumer calling `committer.markProcessed(record)`."""
        return self._proxy("java.util.function.Consumer", self._mark.bindTo(committer))

    def send_all(self, records: Any) -> Any:
        """Hand every record to the producer; a Java list of their futures."""
        return records.stream().map(self.send).collect(self._to_list)


def make_forwarder(status: CaptureStatus, producer: Any, gate: DurabilityGate | None = None) -> Any:
    """The ChangeConsumer: without ``gate`` a batch is marked once the broker acked it; with one,
    once every lane made it durable (see :mod:`cdc.debezium.gate`)."""
    ops = _JavaBatchOps(producer)
    connect_exception = jpype.JClass("org.apache.kafka.connect.errors.ConnectException")

    def release(committer: Any) -> None:
        assert gate is not None
        if status.closing.is_set():
            return  # the engine is closing (a broker restart among others): store no further position
        batch = gate.releasable()
        if batch is not None:
            committer.markProcessed(batch.last_record)
            committer.markBatchFinished()
            status.snapshot_delivered = gate.snapshot_durable

    def held_back(records: Any, committer: Any) -> None:
        assert gate is not None
        closing, draining = status.closing.is_set, gate.draining.is_set
        gate.wait_for_room(lambda: release(committer), lambda: closing() or draining())
        gate.hold_while_paused(lambda: release(committer), lambda: closing() or draining())
        if draining():  # stopping: this batch is not sent; the next start re-streams it from the slot
            gate.wait_drained(lambda: release(committer), closing)
            return
        count = records.size()
        if not count:
            return
        futures = ops.send_all(records)
        producer.flush()
        last = records.get(count - 1)
        gate.admit(Batch(last, ops.offsets(futures), count, _past_snapshot(last.value())))
        release(committer)
        _count(status, count)

    def forward(records: Any, committer: Any) -> None:
        futures = ops.send_all(records)
        producer.flush()
        futures.forEach(ops.await_ack)  # raises if any record failed
        records.forEach(ops.marker(committer))
        committer.markBatchFinished()
        count = records.size()
        _count(status, count)
        if count and not status.snapshot_delivered:
            status.snapshot_delivered = _past_snapshot(records.get(count - 1).value())

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ChangeConsumer")
    class KafkaForwarder:
        """Send a batch, wait for the broker's acks, only then (or once durable) mark it processed."""

        @override
        def handleBatch(self, records: Any, committer: Any) -> None:
            if status.closing.is_set():
                return  # unmarked: re-streamed at the next start
            try:
                (held_back if gate is not None else forward)(records, committer)
            except jpype.JException as e:
                if status.closing.is_set():
                    return  # engine.close() interrupted the wait: nothing lost, the batch is unmarked
                status.fail(f"producing change records to Kafka failed: {root_message(e)}")
                raise connect_exception(str(status.error)) from None

        @override
        def supportsTombstoneEvents(self) -> bool:
            return True  # null values go to Kafka as tombstones, keyed like the delete

    return KafkaForwarder()


def _count(status: CaptureStatus, count: int) -> None:
    with status.lock:
        status.records_produced += count
        status.batches += 1
        status.last_batch_monotonic = time.monotonic()
