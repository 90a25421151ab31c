"""One root exception for the bridge; adapters translate driver errors into these."""

from __future__ import annotations


class CdcError(Exception):
    """Root of every error the bridge raises on purpose.

    The message is meant for a person: it says what is wrong and what to do.
    """


class ConfigError(CdcError):
    """Settings or command-line input that cannot work."""


class SourceError(CdcError):
    """The PostgreSQL source is unreachable or not ready for logical replication."""


class BrokerError(CdcError):
    """The Kafka-protocol broker is unreachable or refused an operation."""


class WarehouseError(CdcError):
    """ClickHouse (server or embedded chDB) is unreachable or refused a statement."""


class CaptureError(CdcError):
    """Debezium could not start or stopped with an error."""


class StackError(CdcError):
    """An embedded component (process or port) could not be started or stopped."""


class BadMessage(CdcError):
    """This one message cannot be applied, however often it is retried: it goes to the dead letters
    and the stream goes on. Only the message itself raises it (a malformed envelope, an unknown
    table, a value the warehouse refuses, a translator's own error). A bug in the bridge or a broken
    dependency is never a BadMessage: it stops the lane, loudly, with nothing committed."""


class DataRejected(BadMessage):
    """The warehouse refused the data itself (not an outage): retrying the same rows cannot help."""


class UnknownTableError(BadMessage):
    """A change arrived for a table the source catalog does not know."""
