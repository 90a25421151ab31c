"""What preflight knows about a source database: plain facts, read once, judged elsewhere.

Pure data (no IO, no driver): the PostgreSQL adapter fills these in one read-only session;
:mod:`cdc.preflight.rules` turns them into findings.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.ports import SlotInfo


@dataclass(frozen=True, slots=True)
class RoleFacts:
    """The role preflight connected as (``current_user``)."""

    name: str
    superuser: bool
    replication: bool  # the REPLICATION attribute (not inherited through membership)
    rds_replication: bool | None  # member of Amazon RDS's rds_replication; None: no such role here
    can_create_in_database: bool  # CREATE on the database: needed to create a publication


@dataclass(frozen=True, slots=True)
class TableFacts:
    """An ordinary (``r``) or partitioned (``p``) table outside the system schemas."""

    schema: str
    name: str
    kind: str  # pg_class.relkind
    replica_identity: str  # pg_class.relreplident: d(efault), n(othing), f(ull), i(ndex)
    has_primary_key: bool
    has_identity_index: bool  # an index marked as REPLICA IDENTITY exists
    can_select: bool
    owned: bool  # current_user owns it (directly or through a role it inherits)
    toastable: tuple[str, ...] = ()  # variable-length columns whose storage allows TOAST
    unbounded_numeric: tuple[str, ...] = ()  # numeric columns without a precision
    toast_lost: tuple[str, ...] = ()  # TOAST-able columns whose unchanged value Debezium sends as NULL

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def partitioned(self) -> bool:
        return self.kind == "p"

    @property
    def has_usable_identity(self) -> bool:
        """The bridge captures the table only when updates and deletes identify their row."""
        ident = self.replica_identity
        return ident == "f" or (ident == "i" and self.has_identity_index) or (ident == "d" and self.has_primary_key)


@dataclass(frozen=True, slots=True)
class PublicationFacts:
    """A publication in the source database; ``tables`` is empty for FOR ALL TABLES."""

    name: str
    all_tables: bool
    via_partition_root: bool
    owned: bool
    tables: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """Everything preflight reads from one source database."""

    database: str
    server_version: int  # server_version_num, e.g. 150004
    in_recovery: bool
    wal_level: str
    max_replication_slots: int
    max_wal_senders: int
    wal_senders_in_use: int
    role: RoleFacts
    tables: tuple[TableFacts, ...]
    publications: tuple[PublicationFacts, ...]
    slots: tuple[SlotInfo, ...]
