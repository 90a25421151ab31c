"""Dagster resources: the ports assets, checks and sensors reach ClickHouse and PostgreSQL through.

Nothing connects when a resource is built (definitions load without IO); the connection opens on
first use within a run, sensor tick or check, and closes when Dagster tears the resource down.
Settings left empty fall back to the bridge's settings at that moment, the same variables
``cdc`` reads (``CDC_CLICKHOUSE_URL``, ``CDC_STATE_DIR``, ``CDC_SOURCE_DSN``); the adapters
come from :mod:`cdc.bootstrap`, the composition root.
"""

import os
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from cdc import bootstrap
from cdc import settings as config
from cdc.adapters.clickhouse import ClickHouseWarehouse
from cdc.adapters.postgres import PostgresSource
from cdc.errors import ConfigError
from cdc.mirror.captured import CapturedTable
from cdc.ports import Warehouse
from cdc.status.client import bridge_url, call


class WarehouseResource(ConfigurableResource):  # type: ignore[type-arg]
    """ClickHouse as the ``cdc.ports.Warehouse`` port.

    Where it connects: ``url`` (else ``CDC_CLICKHOUSE_URL``), else the HTTP endpoint the running
    bridge serves for its embedded store under ``state_dir`` (else ``CDC_STATE_DIR``, else ``.cdc``).
    It opens the embedded store itself only with ``in_process``: chDB admits one process per store,
    and a long-lived Dagster process holding it would keep the bridge from starting.
    """

    url: str = Field(
        default="",
        repr=False,
        description="ClickHouse URL; empty: CDC_CLICKHOUSE_URL, else the running bridge's endpoint",
    )
    state_dir: str = Field(default="", description="the bridge's state dir; empty: CDC_STATE_DIR, else .cdc")
    in_process: bool = Field(
        default=False,
        description="open the embedded store in this process when no bridge serves it (tests and one-off runs only)",
    )
    _client: ClickHouseWarehouse | None = PrivateAttr(default=None)

    def warehouse(self) -> Warehouse:
        """The connection of this run or tick, opened on first use."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> ClickHouseWarehouse:
        settings = config.load(self.state_dir or None, clickhouse_url=self.url or None)
        return bootstrap.served_warehouse(settings, in_process=self.in_process)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class SourceResource(ConfigurableResource):  # type: ignore[type-arg]
    """The source PostgreSQL databases, read-only use (counts, the replication slot's position).

    A table's source is reached through the variable its ``[[source]]`` names (``dsn_env``, recorded
    by the bridge), else ``dsn``, else ``CDC_SOURCE_DSN``. The DSN is never shown: it is hidden from
    the resource's repr, and errors carry it with the password removed."""

    dsn: str = Field(
        default="",
        repr=False,
        description="PostgreSQL DSN of a single source; empty: CDC_SOURCE_DSN. Prefer the environment: "
        "a DSN typed here shows in the UI",
    )

    def source(self, table: CapturedTable | None = None) -> PostgresSource:
        if table is not None and table.dsn_env:
            dsn = os.environ.get(table.dsn_env, "")
            if not dsn:
                raise ConfigError(
                    f"source {table.source}: environment variable {table.dsn_env} is not set in the Dagster "
                    "processes; export it with the source's DSN"
                )
            return bootstrap.postgres(dsn, read_only=True)
        dsn = self.dsn or config.load().secret("source_dsn")
        if not dsn:
            raise ConfigError(
                "no source database: set CDC_SOURCE_DSN (the bridge sets it for the Dagster UI it starts)"
            )
        return bootstrap.postgres(dsn, read_only=True)


class BridgeResource(ConfigurableResource):  # type: ignore[type-arg]
    """The running bridge's control routes (content parity runs inside it, with the sink's own tables):
    ``url`` (else ``CDC_BRIDGE_URL``), else the status server of the bridge running on ``state_dir``
    (else ``CDC_STATE_DIR``, else ``.cdc``)."""

    url: str = Field(default="", description="the bridge's status URL; empty: CDC_BRIDGE_URL, else the state dir's")
    state_dir: str = Field(default="", description="the bridge's state dir; empty: CDC_STATE_DIR, else .cdc")

    def parity(self, table: CapturedTable, budget_rows: int | None = None) -> dict[str, Any]:
        """The bridge's content-parity report of ``table`` (``cdc.mirror.parity``, as JSON)."""
        url = (
            self.url
            or os.environ.get("CDC_BRIDGE_URL", "")
            or bridge_url(config.load(self.state_dir or None).state_dir)
        )
        body = {"table": f"{table.schema}.{table.table}", "source": table.source, "budget_rows": budget_rows}
        (report,) = call(url, "/parity", "POST", body)["reports"]
        return dict(report)
