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


class DataRejected(CdcError):
    """The warehouse refused the data itself (not an outage): retrying the same rows cannot help."""


class UnknownTableError(CdcError):
    """A change arrived for a table the source catalog does not know."""
