"""Typed settings, read once from flags and environment. No IO at import.

Unset external endpoints mean embedded: a private PostgreSQL (demo), Tansu for Kafka,
chDB for ClickHouse, all on loopback with their data under the state dir.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cdc.config import BridgeConfig, SourceSpec, load_config
from cdc.embedded.net import free_port, port_in_use

DEFAULT_STATE_DIR = ".cdc"
PREFERRED_PORTS = {"postgres": 55432, "kafka": 19092, "clickhouse": 18123, "dagster": 13000, "status": 19400}


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    source_dsn: str | None = field(default=None, repr=False)  # may hold a password
    kafka_bootstrap: str | None = None
    kafka_connect_url: str | None = field(default=None, repr=False)  # Debezium in Kafka Connect, not embedded
    clickhouse_url: str | None = field(default=None, repr=False)
    source_name: str | None = None
    tables: tuple[str, ...] = ()
    translators: tuple[str, ...] = ()  # modules declaring events and translators
    events: bool = True  # run the domain-event consumer
    config_path: Path | None = None  # cdc.toml (--config, CDC_CONFIG)
    sources: tuple[SourceSpec, ...] = ()  # from the config file; empty: the single source above
    salt_env: str = "CDC_MASK_SALT"
    heartbeat_interval_ms: int = 1_000
    max_retained_wal_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def load(cls, state_dir: str | None = None, **overrides: object) -> Settings:
        env = os.environ
        base = cls(
            state_dir=Path(state_dir or env.get("CDC_STATE_DIR") or DEFAULT_STATE_DIR).absolute(),
            source_dsn=env.get("CDC_SOURCE_DSN") or None,
            kafka_bootstrap=env.get("CDC_KAFKA_BOOTSTRAP_SERVERS") or None,
            kafka_connect_url=env.get("CDC_KAFKA_CONNECT_URL") or None,
            clickhouse_url=env.get("CDC_CLICKHOUSE_URL") or None,
            source_name=env.get("CDC_SOURCE_NAME") or None,
            tables=_tables(env.get("CDC_TABLES", "")),
            translators=_tables(env.get("CDC_TRANSLATORS", "")),
            events=env.get("CDC_EVENTS", "on").lower() not in ("0", "off", "false", "no"),
        )
        given = {k: v for k, v in overrides.items() if v is not None and v != () and v != ""}
        settings = replace(base, **given)  # type: ignore[arg-type]
        config = given.get("config_path")  # only `cdc run` reads sources (--config or CDC_CONFIG)
        return settings.with_config(load_config(Path(str(config)))) if config else settings

    def with_config(self, config: BridgeConfig) -> Settings:
        """These settings with the sources, masking salt and guardrails of a ``cdc.toml``."""
        return replace(
            self,
            config_path=config.path,
            sources=config.sources,
            salt_env=config.salt_env,
            heartbeat_interval_ms=config.guardrails.heartbeat_interval_ms,
            max_retained_wal_bytes=config.guardrails.max_retained_wal_bytes,
        )

    def source_specs(self, default_dsn: str) -> tuple[SourceSpec, ...]:
        """The sources to capture: the config file's, else one from the flags and environment."""
        if self.sources:
            return self.sources
        return (SourceSpec(default_dsn, self.source_name, self.tables),)

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


def _tables(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def parse_tables(text: str | None) -> tuple[str, ...]:
    return _tables(text or "")


class PortBook:
    """Loopback ports of the embedded components, kept in ``state_dir/ports.json`` so a restart reuses them."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "ports.json"
        self._ports: dict[str, int] = {}
        if self._path.exists():
            try:
                self._ports = {k: int(v) for k, v in json.loads(self._path.read_text()).items()}
            except (ValueError, OSError):
                self._ports = {}

    def port(self, name: str, busy_ok: bool = False) -> int:
        """The port for ``name``: the remembered one if free, else the preferred, else any free port."""
        for candidate in (self._ports.get(name), PREFERRED_PORTS.get(name)):
            if candidate and (busy_ok or not port_in_use(candidate)):
                return self._remember(name, candidate)
        return self._remember(name, free_port())

    def _remember(self, name: str, port: int) -> int:
        self._ports[name] = port
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text(json.dumps(self._ports, indent=2))
        return port
