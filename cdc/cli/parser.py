"""The `cdc` command line: every subcommand, flag and help text (argparse), nothing else."""

from __future__ import annotations

import argparse

from cdc import __version__


def state_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", help="where embedded components keep data and logs (env CDC_STATE_DIR; default .cdc)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to the console")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdc",
        description="Stream PostgreSQL changes through Debezium and Kafka into ClickHouse.",
        epilog="Unset CDC_SOURCE_DSN / CDC_KAFKA_BOOTSTRAP_SERVERS / CDC_CLICKHOUSE_URL mean embedded components.",
    )
    parser.add_argument("--version", action="version", version=f"cdc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the embedded stack with the pizza-shop demo and its load",
        description="Start PostgreSQL (database 'shop'), Kafka, Debezium and ClickHouse locally, "
        "generate shop traffic and mirror it. With --duration, stop the load after that many "
        "seconds, wait until caught up, compare row counts and exit non-zero if any differ.",
    )
    demo.add_argument("--duration", type=float, help="seconds of load before the check (default: until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=20.0, help="shop actions per second (default 20)")
    demo.add_argument("--no-ui", action="store_true", help="do not start the Dagster webserver and daemon")
    _translators_arg(demo)
    state_dir_arg(demo)

    run = sub.add_parser(
        "run",
        help="run the bridge for an existing PostgreSQL database",
        description="Capture a PostgreSQL database into ClickHouse until Ctrl-C, or with "
        "--until-caught-up until every change committed before the start is queryable.",
    )
    run.add_argument("--source", help="PostgreSQL DSN (env CDC_SOURCE_DSN; default: the embedded demo database)")
    run.add_argument(
        "--source-name",
        help="name of the source: topic prefix and ClickHouse database (default: the PostgreSQL database name)",
    )
    run.add_argument("--tables", help="comma-separated schema.table list (default: every table with a key)")
    run.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit 0 once every change committed before the start is in ClickHouse",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="with --until-caught-up: give up (exit 1) after this many seconds (default 3600)",
    )
    _translators_arg(run)
    run.add_argument("--no-events", action="store_true", help="mirror only: do not run the domain-event consumer")
    run.add_argument(
        "--outbox-tables",
        help="comma-separated outbox tables (Debezium's layout: id, aggregatetype, aggregateid, type, payload"
        "[, version]) whose inserted rows are events the application wrote itself (env CDC_OUTBOX_TABLES;"
        " README, 'Authored events')",
    )
    run.add_argument(
        "--outbox-prefix",
        help="pg_logical_emit_message prefix whose messages are authored events (env CDC_OUTBOX_PREFIX)",
    )
    run.add_argument(
        "--initial-load",
        choices=("copy", "debezium"),
        help="how existing rows reach ClickHouse at a first start: the parallel, resumable copy path (default), "
        "or Debezium's row-by-row snapshot (env CDC_INITIAL_LOAD; README, 'Initial load')",
    )
    run.add_argument(
        "--ui",
        action="store_true",
        help="also start the Dagster webserver and daemon (asset graph, checks, reports) and print their address",
    )
    run.add_argument(
        "--config",
        help="cdc.toml naming one or more sources with their table and column rules "
        "(env CDC_CONFIG); replaces --source/--source-name/--tables",
    )
    state_dir_arg(run)

    ui = sub.add_parser(
        "ui",
        help="start the Dagster UI for a running bridge",
        description="Start the Dagster webserver and daemon (asset graph, checks, report builds) for the bridge "
        "running on the state dir, or for CDC_CLICKHOUSE_URL, until Ctrl-C; prints the address. The "
        "graph shows the tables the bridge captures; reports come from [projections] modules.",
    )
    ui.add_argument(
        "--projections",
        help="comma-separated modules declaring projections (env CDC_PROJECTIONS__MODULES; cdc.toml "
        "[projections] modules)",
    )
    state_dir_arg(ui)

    sql = sub.add_parser(
        "sql",
        help="run SQL against the ClickHouse warehouse",
        description="Query the warehouse: the running bridge's endpoint, the embedded store, or CDC_CLICKHOUSE_URL.",
    )
    sql.add_argument("query", help='e.g. "SELECT status, count() FROM shop.orders GROUP BY status"')
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format")
    state_dir_arg(sql)
    _events_parser(sub)
    _dlq_parser(sub)
    _preflight_parser(sub)
    _status_parser(sub)
    _resync_parser(sub)
    _add_table_parser(sub)
    _erase_parser(sub)
    _verify_parser(sub)
    return parser


def _translators_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--translators",
        help="comma-separated Python modules declaring events and translators "
        "(env CDC_TRANSLATORS; default: the ones the last bridge on this state dir used)",
    )


def _preflight_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "preflight",
        help="check that a PostgreSQL database is ready for the bridge (changes nothing)",
        description="Connect read-only and check what `cdc run` needs: wal_level=logical, a free "
        "replication slot and WAL sender, a role with REPLICATION and SELECT on the captured tables, "
        "the rights to create the publication cdc_<source>, a key or replica identity per table; "
        "note TOAST-able columns, partitioned tables, unbounded numerics and replication slots that "
        "hold WAL. Every finding names its fix. Exit 0 ready, 1 something blocks (or the database "
        "cannot be reached), 2 warnings only.",
    )
    p.add_argument(
        "dsn", metavar="DSN", help='e.g. "postgresql://cdc_user:secret@db:5432/app" (the password is never printed)'
    )
    p.add_argument(
        "--tables",
        help="comma-separated schema.table list, as for `cdc run` (default: every ordinary "
        "and partitioned table outside the system schemas)",
    )
    p.add_argument(
        "--source-name",
        help="the source name `cdc run` will use; slot and publication are cdc_<name> (default: the database name)",
    )
    p.add_argument("--json", action="store_true", help="print the findings and a summary as JSON")


def _events_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = sub.add_parser(
        "events",
        help="domain events: catalog, compatibility check, replay of an aggregate, upcast of the store",
        description="Work with the versioned domain events the bridge derives from row changes.",
    )
    esub = events.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")
    catalog = esub.add_parser("catalog", help="list every event type and version with its fields (JSON Schema)")
    catalog.add_argument("--format", choices=["markdown", "json"], default="markdown", help="output format")
    check = esub.add_parser(
        "check",
        help="fail when an event's fields changed without a version bump and an "
        "upcaster (compares with the catalog snapshot kept in the repository)",
    )
    check.add_argument(
        "--snapshot", default="event-catalog.json", help="catalog snapshot file (default ./event-catalog.json)"
    )
    check.add_argument("--update", action="store_true", help="record the current definitions as the new snapshot")
    replay = esub.add_parser(
        "replay",
        help="fold an aggregate's events into its state and print its history",
        description="Read the aggregate's events from events.domain_events, upcast each "
        "to its type's latest version, fold them into the state and print both.",
    )
    replay.add_argument("aggregate_type", help="e.g. order")
    replay.add_argument("aggregate_id", help="e.g. 42")
    replay.add_argument("--as-of", help="only events that occurred up to this ISO 8601 time (UTC by default)")
    replay.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    upcast = esub.add_parser(
        "upcast",
        help="store the latest shape of events stored before their type's newest version shipped",
        description="Find events in events.domain_events whose latest_version is below their type's latest "
        "version in the translators, upcast each from its stored payload (which stays as it is) and re-insert "
        "the row with the new payload_latest (a new stored_at: the next incremental projection builds "
        "recompute what changed). Idempotent; the bridge's events worker also does this when it starts. "
        "Exit 0 when every event was upcast, 1 when an upcaster failed on some (they are named).",
    )
    upcast.add_argument("--dry-run", action="store_true", help="count and try, but write nothing")
    upcast.add_argument(
        "--batch-rows", type=int, default=10_000, help="events read and re-inserted at a time (default 10000)"
    )
    for p in (catalog, check, replay, upcast):
        _translators_arg(p)
        state_dir_arg(p)


def _dlq_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="dead letters: messages a consumer could not parse or translate",
        description="Dead letters live in Kafka topic cdc.dead_letters and ClickHouse "
        "cdc.dead_letters, with the error, a short stack and the original bytes.",
    )
    dsub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="SUBCOMMAND")
    lst = dsub.add_parser("list", help="show dead letters waiting for a replay")
    lst.add_argument("--all", action="store_true", help="include the ones already replayed")
    lst.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    lst.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    replay = dsub.add_parser(
        "replay",
        help="send dead letters back through the running bridge after a fix",
        description="Re-publish each pending dead letter's original bytes to its original "
        "topic; the running bridge processes it again (idempotently). Needs a running "
        "bridge or CDC_KAFKA_BOOTSTRAP_SERVERS.",
    )
    replay.add_argument("--topic", help="only dead letters from this change topic")
    replay.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    for p in (lst, replay):
        state_dir_arg(p)


def _status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status",
        help="the running bridge's health: slots, lag, freshness, rates, dead letters",
        description="Ask the bridge running on the state dir for its status: per source the "
        "replication slot's retained WAL and state, consumer lag per topic, freshness, rows/s "
        "over the last minute and dead letters, with warnings. Exit 0 healthy, 1 warnings, "
        "2 no bridge running. The same numbers are Prometheus metrics at <status url>/metrics.",
    )
    status.add_argument("--json", action="store_true", help="print the JSON snapshot instead of the report")
    state_dir_arg(status)


def _resync_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    resync = sub.add_parser(
        "resync",
        help="reload one table's mirror from the source and swap it in, while streaming goes on",
        description="Ask the bridge running on the state dir to copy TABLE from its source into a shadow "
        "table and swap it in atomically (EXCHANGE TABLES): queries see the old mirror until the new one is "
        "complete, and changes streamed meanwhile are kept. Prints progress until it is done. Exit codes: "
        "0 swapped in, 2 it could not start or failed (the mirror is as it was).",
    )
    resync.add_argument(
        "table", nargs="?", default="", help='schema.table as captured, e.g. public.orders or sales."Order Items"'
    )
    resync.add_argument("--source", dest="source_name", help="the source's name, when several capture TABLE")
    resync.add_argument("--no-wait", action="store_true", help="start it and return (see `cdc resync --list`)")
    resync.add_argument("--list", action="store_true", help="list this bridge's resyncs (TABLE is ignored)")
    state_dir_arg(resync)


def _erase_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    erase = sub.add_parser(
        "erase",
        help="remove one aggregate's data (a person's) from the mirrors, change logs, events, reports and topics",
        description="Erase AGGREGATE ID by the erasure rule the translators module declares (erasure(...)): "
        "the rows of its tables whose column holds ID, their whole change history, every event of the "
        "aggregates they made, their dead letters; then the reports are rebuilt and the embedded broker's "
        "topics emptied. One row in cdc.erasures records counts and a digest of the id, never the values. "
        "Delete the rows in the source too, or their next change brings them back. Exit codes: 0 erased, "
        "1 erased but reports built before were not rebuilt (set CDC_PROJECTIONS__MODULES), 2 refused.",
    )
    erase.add_argument("aggregate", help="the aggregate type the rule names, e.g. customer")
    erase.add_argument("id", help="its id, e.g. 42")
    erase.add_argument("--source", dest="source_name", help="the source's name, when several have the rule")
    _translators_arg(erase)
    state_dir_arg(erase)


def _add_table_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add = sub.add_parser(
        "add-table",
        help="capture more tables in the running bridge: copied, then streamed",
        description="Ask the bridge running on the state dir to capture TABLE(s) too: they are checked like "
        "configured tables, added to the publication, their mirrors created and their rows copied by the copy "
        "path while the source's other tables keep streaming (Debezium and the lanes restart once, resuming "
        "where they were). The bridge remembers them across restarts. Exit codes: 0 added, 2 refused.",
    )
    add.add_argument("tables", nargs="+", metavar="TABLE", help="schema.table, e.g. public.invoices")
    add.add_argument("--source", dest="source_name", help="the source's name, when the bridge runs several")
    state_dir_arg(add)


def _verify_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = sub.add_parser(
        "verify",
        help="compare mirrors with the source, every column, over key ranges (content parity)",
        description="Ask the bridge running on the state dir to compare TABLE(s) (default: every captured table) "
        "with the source: rows copied by the copy path into a scratch table, compared with the mirror key by key "
        "over a hash of every column; keys that differ are read again, so changes in flight are not drift. Each "
        "run compares up to --budget-rows per table and the next goes on where it stopped. One line per table. "
        "Exit codes: 0 equal, 1 drift found, 2 a table could not be compared or no bridge runs.",
    )
    verify.add_argument("tables", nargs="*", metavar="TABLE", help="schema.table, e.g. public.orders")
    verify.add_argument("--source", dest="source_name", help="the source's name, when several capture TABLE")
    verify.add_argument(
        "--budget-rows", type=int, help="source rows compared per table in this run, at most (default 200,000)"
    )
    state_dir_arg(verify)
