"""In-memory stand-ins for ports, used by unit tests and held to the same contract suites as the real adapters."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from cdc.domain.changes import TableRef, TableSchema
from cdc.ports import Message, TopicPartition


class FakeBroker:
    """Topics with one partition each, and committed offsets per consumer group."""

    def __init__(self) -> None:
        self.logs: dict[str, list[tuple[bytes | None, bytes | None]]] = defaultdict(list)
        self.committed: dict[str, dict[TopicPartition, int]] = defaultdict(dict)

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.logs[topic].append((key, value))

    def truncate(self, topics: Sequence[str]) -> None:
        """Like deleting and re-creating the topics: records and every group's offsets gone."""
        for topic in topics:
            self.logs[topic].clear()
            for offsets in self.committed.values():
                offsets.pop((topic, 0), None)


class FakeStream:
    """A consumer-group member: starts at the group's committed offsets, like Kafka."""

    def __init__(self, broker: FakeBroker, group: str, topics: Sequence[str]) -> None:
        self.broker, self.group, self.topics = broker, group, list(topics)
        self.position = {(t, 0): broker.committed[group].get((t, 0), 0) for t in self.topics}
        self.commits: list[dict[TopicPartition, int]] = []

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        out: list[Message] = []
        for (topic, part), pos in self.position.items():
            log = self.broker.logs[topic]
            take = log[pos : pos + max_records - len(out)]
            out.extend(Message(topic, part, pos + i, k, v) for i, (k, v) in enumerate(take))
            self.position[(topic, part)] = pos + len(take)
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.broker.committed[self.group].update(offsets)
        self.commits.append(dict(offsets))

    def lag(self) -> dict[TopicPartition, int]:
        done = self.broker.committed[self.group]
        return {(t, 0): len(self.broker.logs[t]) - done.get((t, 0), 0) for t in self.topics}

    def highwater(self) -> dict[TopicPartition, int]:
        return {(t, 0): len(self.broker.logs[t]) for t in self.topics}

    def positions(self) -> dict[TopicPartition, int]:
        return dict(self.position)

    def rewind(self) -> None:
        self.position = {tp: 0 for tp in self.position}

    def close(self) -> None:
        pass


class StaticCatalog:
    def __init__(self, schemas: Sequence[TableSchema]) -> None:
        self._schemas = {(s.ref.source, s.ref.schema, s.ref.table): s for s in schemas}

    def table_schema(self, ref: TableRef) -> TableSchema | None:
        return self._schemas.get((ref.source, ref.schema, ref.table))
