"""Kafka adapter: the only module that imports kafka-python.

``KafkaChangeStream`` is the consumer-group side of the mirror (manual commits);
``KafkaPublisher`` produces domain events and dead letters (acks=all, waits for every ack);
``ensure_topics`` creates change topics up front so consumers can subscribe by name.
Driver errors become :class:`BrokerError` with a line saying what to check.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from cdc.errors import BrokerError
from cdc.ports import Message, OutRecord

log = logging.getLogger(__name__)

# Tansu (and small clusters) answer group joins slowly with the defaults; these keep the first join short.
GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def _unreachable(bootstrap: str, e: Exception) -> BrokerError:
    return BrokerError(
        f"cannot reach Kafka at {bootstrap} ({type(e).__name__}: {e}); "
        "check CDC_KAFKA_BOOTSTRAP_SERVERS and that the broker is running"
    )


@contextlib.contextmanager
def _admin(bootstrap: str, doing: str) -> Iterator[KafkaAdminClient]:
    """An admin client for one task; its driver errors become BrokerError saying what failed."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cdc-admin", request_timeout_ms=15000)
    except (KafkaError, OSError) as e:
        raise _unreachable(bootstrap, e) from e
    try:
        yield admin
    except KafkaError as e:
        raise BrokerError(f"Kafka at {bootstrap} refused to {doing}: {e}") from e
    finally:
        admin.close()


def _create(admin: KafkaAdminClient, topics: Sequence[str], partitions: int) -> None:
    with contextlib.suppress(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics])


def ensure_topics(bootstrap: str, topics: Sequence[str], partitions: int = 1) -> None:
    """Create missing topics (idempotent)."""
    with _admin(bootstrap, "create topics") as admin:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            _create(admin, missing, partitions)
            log.info("created topics %s", ", ".join(missing))


def truncate_topics(bootstrap: str, topics: Sequence[str], partitions: int = 1) -> None:
    """Delete ``topics`` and create them empty again (offsets restart at 0). Tansu's memory engine
    frees records only this way (its DeleteRecords is not implemented, retention is not applied).

    Only while nothing can produce to them: Tansu acknowledges writes to a deleted topic, and a
    record written between the delete and the create would be lost.
    """
    with _admin(bootstrap, "truncate topics") as admin:
        existing = set(admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            admin.delete_topics(doomed)
        _create(admin, topics, partitions)


class KafkaChangeStream:
    """A consumer group over named topics with manual, post-sink commits."""

    def __init__(self, bootstrap: str, group_id: str, topics: Sequence[str], **overrides: Any) -> None:
        self.bootstrap = bootstrap
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "group_id": group_id,
            "client_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "fetch_max_wait_ms": 50,
            "metadata_max_age_ms": 10000,
            "request_timeout_ms": 15000,  # a dead broker is noticed in seconds, not minutes
            **GROUP_TIMEOUTS,
            **overrides,
        }
        try:
            self._consumer = KafkaConsumer(**config)
        except (KafkaError, OSError) as e:
            raise _unreachable(bootstrap, e) from e
        self._consumer.subscribe(topics=list(topics))

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as e:
            raise BrokerError(f"reading from Kafka at {self.bootstrap} failed: {e}") from e
        out: list[Message] = []
        for records in batches.values():
            out.extend(Message(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in records)
        return out

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        payload = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        try:
            self._consumer.commit(payload)
        except KafkaError as e:
            raise BrokerError(f"committing offsets to Kafka at {self.bootstrap} failed: {e}") from e

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages not yet committed, per assigned partition.

        Uses the high watermark the broker sent with the last fetch: Tansu's ListOffsets answer
        for "latest" is the base offset of the last record batch + 1, not the log end.
        """
        out: dict[tuple[str, int], int] = {}
        try:
            for tp in self._consumer.assignment():
                high = self._consumer.highwater(tp)
                if high is None:
                    continue
                committed = self._consumer.committed(tp) or 0
                out[(tp.topic, tp.partition)] = max(0, high - committed)
        except KafkaError as e:
            raise BrokerError(f"reading offsets from Kafka at {self.bootstrap} failed: {e}") from e
        return out

    def rewind(self) -> None:
        """Read every assigned partition from offset 0 again (its topic was truncated)."""
        for tp in self._consumer.assignment():
            self._consumer.seek(tp, 0)

    def highwater(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is not None:
                out[(tp.topic, tp.partition)] = high
        return out

    def positions(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        try:
            for tp in self._consumer.assignment():
                out[(tp.topic, tp.partition)] = self._consumer.position(tp)
        except KafkaError as e:
            raise BrokerError(f"reading positions from Kafka at {self.bootstrap} failed: {e}") from e
        return out

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaPublisher:
    """Idempotent producer; ``publish`` returns after the broker acknowledged every record.

    One in-flight request per connection keeps records of one partition in the order given
    even when a send is retried.

    ``publish`` ends with a flush, which sends whatever is queued at once, so the linger only
    decides how often the sender thread wakes *while* a batch of records is being queued: a long
    one lets it send a few large requests instead of many small ones, competing less with the
    queueing for the interpreter. A topic of one partition gets its records put there without
    hashing their keys (kafka-python's murmur2 is Python); several partitions hash as usual.
    """

    def __init__(self, bootstrap: str, client_id: str, **overrides: Any) -> None:
        self.bootstrap = bootstrap
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id,
            "acks": "all",
            "linger_ms": 1000,  # never waited for: publish flushes (see above)
            "batch_size": 256 * 1024,
            "max_in_flight_requests_per_connection": 1,
            "retries": 5,
            "request_timeout_ms": 15000,
            "max_block_ms": 15000,
            **overrides,
        }
        try:
            self._producer = KafkaProducer(**config)
        except (KafkaError, OSError) as e:
            raise _unreachable(bootstrap, e) from e
        self._partitions: dict[str, int | None] = {}  # per topic: 0 when it has one partition

    def publish(self, records: Sequence[OutRecord]) -> None:
        send, single = self._producer.send, self._single_partition
        self._partitions.clear()  # looked up once per topic and call: partitions can be added
        try:
            futures = [
                send(r.topic, key=r.key, value=r.value, headers=list(r.headers), partition=single(r.topic))
                for r in records
            ]
            self._producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
        except KafkaError as e:
            raise BrokerError(f"publishing to Kafka at {self.bootstrap} failed: {e}") from e

    def _single_partition(self, topic: str) -> int | None:
        """0 for a topic of one partition in the producer's metadata, else None (the partitioner hashes
        the key; an unknown topic is left to ``send``, which waits for its metadata or fails the record)."""
        if topic not in self._partitions:
            partitions = self._producer._metadata.partitions_for_topic(topic)  # the client's cached metadata
            self._partitions[topic] = 0 if partitions is not None and len(partitions) == 1 else None
        return self._partitions[topic]

    def close(self) -> None:
        try:
            self._producer.close(timeout=5)
        except KafkaError:  # records a dead broker never acknowledged: their batch is retried, not lost
            sender = getattr(self._producer, "_sender", None)
            if sender is not None:
                sender.force_close()
            self._producer._closed = True  # else kafka-python closes again (and prints) when collected
