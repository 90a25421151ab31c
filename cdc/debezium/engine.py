"""Debezium's embedded engine in this process (JVM via JPype), producing to Kafka from the JVM.

Records never become Python strings: the ChangeConsumer (``forwarder``) hands Debezium's Java
`String` key/value straight to a Java `KafkaProducer`.

Delivery guarantee: a batch is marked processed (so Debezium may store its offset and confirm
the LSN to the replication slot) only after the broker acknowledged every record of it
(acks=all) and, with a :class:`~cdc.debezium.gate.DurabilityGate`, only once every lane has
made it durable in ClickHouse. A crash replays from the last stored offset: nothing committed
at the source is lost, whatever the broker keeps.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import jpype

from cdc.debezium.forwarder import CaptureStatus, make_forwarder, start_producer
from cdc.debezium.gate import DurabilityGate
from cdc.debezium.jvm import ensure_jvm, java_properties, override, root_message
from cdc.errors import CaptureError

log = logging.getLogger(__name__)

_HINTS = {
    "No table filters found for filtered publication": "none of the captured tables exist",
    "wal_level": "set wal_level=logical in postgresql.conf and restart PostgreSQL",
}


def _hinted(message: str) -> str:
    hints = [hint for needle, hint in _HINTS.items() if needle in message]
    return f"{message} ({'; '.join(hints)})" if hints else message


def _make_callbacks(status: CaptureStatus, source: str) -> tuple[Any, Any]:
    @jpype.JImplements("io.debezium.engine.DebeziumEngine$CompletionCallback")
    class Completion:
        @override
        def handle(self, success: bool, message: Any, error: Any) -> None:
            if not success:
                detail = root_message(error) if error is not None else str(message)
                status.fail(f"Debezium connector for source {source!r} failed: {_hinted(detail)}")
            status.finished.set()
            status.started.set()

    @jpype.JImplements("io.debezium.engine.DebeziumEngine$ConnectorCallback")
    class Connector:
        # Only these two of the interface's default methods matter here.
        @override
        def taskStarted(self) -> None:
            log.info("Debezium task for source %r started", source)
            status.started.set()

        @override
        def pollingStarted(self) -> None:
            status.started.set()

    return Completion(), Connector()


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
        gate: DurabilityGate | None = None,
    ) -> None:
        self._properties = dict(properties)
        self._producer_overrides = dict(producer_overrides or {})
        self._bootstrap = bootstrap_servers
        self._log_path = Path(log_path)
        self._prefix = properties.get("topic.prefix", "")
        self._status = CaptureStatus()
        self.gate = gate
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
        self._status = CaptureStatus()
        self._producer = start_producer(self._bootstrap, f"cdc-debezium-{self._prefix}", self._producer_overrides)
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

    @property
    def holds_back(self) -> bool:
        """Whether Debezium's position waits for the lanes (then the slot's position means durable)."""
        return self.gate is not None

    def drain(self, timeout: float) -> int:
        """Stop sending new batches and wait until every sent one is durable (released to Debezium),
        at most ``timeout`` seconds; the records still in flight then (re-streamed at the next start)."""
        if self.gate is None or self._thread is None or not self._thread.is_alive():
            return 0
        self.gate.draining.set()
        deadline = time.monotonic() + timeout
        while self.gate.pending_batches and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        return self.gate.in_flight

    def stop(self, timeout: float = 30) -> None:
        """Close the engine (it commits offsets of processed records), then the producer."""
        self._status.closing.set()
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
            log.warning("closing Debezium engine: %s", root_message(e))

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

    def connected(self) -> bool | None:
        """Streaming from the slot now; None during the snapshot (nothing streams yet)."""
        if not self._status.snapshot_delivered and not self.snapshot_completed():
            return None
        return self.streaming_connected()

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
        builder = builder.using(java_properties(self._properties))
        builder = builder.notifying(make_forwarder(self._status, self._producer, self.gate))
        return builder.using(completion).using(connector).build()

    def _run(self) -> None:
        try:
            self._engine.run()
        except jpype.JException as e:
            self._status.fail(f"Debezium engine stopped: {root_message(e)}")
        finally:
            self._status.finished.set()
            self._status.started.set()
