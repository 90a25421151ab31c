"""Composition for the short `cdc events` and `cdc dlq` commands: registry, warehouse, broker."""

from __future__ import annotations

import argparse
from pathlib import Path

from cdc.adapters.clickhouse import connect_warehouse
from cdc.domain.events import EventDefinitionError, EventRegistry, load_modules
from cdc.embedded.endpoint import find_endpoint
from cdc.errors import ConfigError, StackError
from cdc.events import commands
from cdc.settings import PortBook, Settings, parse_tables
from cdc.statefiles import remembered_translators


def registry_for(args: argparse.Namespace, settings: Settings, required: bool = True) -> EventRegistry:
    """Translator modules from --translators, else CDC_TRANSLATORS, else what the last bridge here used."""
    modules = parse_tables(getattr(args, "translators", None)) or settings.translators
    modules = modules or remembered_translators(settings.state_dir)
    if not modules and required:
        raise ConfigError("no translator modules: pass --translators my_pkg.events (or set CDC_TRANSLATORS)")
    try:
        return load_modules(modules)
    except EventDefinitionError as e:
        raise ConfigError(str(e)) from None


def kafka_bootstrap(settings: Settings) -> str:
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    if not find_endpoint(settings.state_dir):
        raise StackError(
            f"no bridge is running on state dir {settings.state_dir}: start `cdc run` or `cdc demo` "
            "first (replayed dead letters go back through its consumers), or set "
            "CDC_KAFKA_BOOTSTRAP_SERVERS"
        )
    return f"127.0.0.1:{PortBook(settings.state_dir).port('kafka', busy_ok=True)}"


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "events" and args.events_command == "catalog":
        return commands.catalog(registry_for(args, settings), args.format)
    if args.command == "events" and args.events_command == "check":
        return commands.check(registry_for(args, settings), Path(args.snapshot), args.update)
    if args.command == "dlq" and args.dlq_command == "replay":
        bootstrap = kafka_bootstrap(settings)
    warehouse = connect_warehouse(settings.clickhouse_url, settings.state_dir)
    try:
        if args.command == "events":
            registry = registry_for(args, settings, required=False)
            return commands.replay_aggregate(
                warehouse, registry, args.aggregate_type, args.aggregate_id, args.as_of, args.format
            )
        if args.dlq_command == "list":
            return commands.dlq_list(warehouse, args.all, args.limit, args.format)
        from cdc.adapters.kafka import KafkaPublisher

        publisher = KafkaPublisher(bootstrap, "cdc-dlq-replay")
        try:
            return commands.dlq_replay(warehouse, publisher, args.topic, args.limit)
        finally:
            publisher.close()
    finally:
        warehouse.close()
