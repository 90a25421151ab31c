"""`cdc`'s entry point: parse, load the settings once, dispatch to the command, print errors as one line.

Exit codes: 0 success; 1 the demo's row counts differ between PostgreSQL and ClickHouse
(or `--until-caught-up` timed out); 2 a problem to fix (the message says what).
`cdc preflight`: 0 ready, 1 blocked, 2 warnings only. `cdc status`: 0 healthy, 1 warnings,
2 no bridge running. `cdc verify`: 0 equal, 1 drift, 2 not compared.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from cdc import settings as config
from cdc.cli.parser import build_parser
from cdc.errors import CdcError, ConfigError
from cdc.settings import Settings, split_list

EXIT_MISMATCH, EXIT_ERROR = 1, 2
_FORMATS = {"table": "PrettyCompactMonoBlock", "csv": "CSVWithNames", "json": "JSONEachRow"}


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _setup_logging(settings: Settings, verbose: bool) -> None:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    file_handler = logging.FileHandler(settings.log_dir / "cdc.log")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.ERROR)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:  # drivers log their own reconnects; the file log keeps them, the console shows ours
        console.addFilter(lambda record: record.name.startswith("cdc"))
    root.handlers[:] = [file_handler, console]
    for noisy in ("kafka", "urllib3", "clickhouse_connect"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # expected with the embedded broker's truncations (topics re-created) and on a busy machine
    for expected in ("kafka.cluster", "kafka.net.selector"):
        logging.getLogger(expected).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = _main(args)
    except Exception:  # a bug: show it, but do not leave the JVM holding the process open
        if args.command not in ("demo", "run"):
            raise
        traceback.print_exc()
        code = EXIT_ERROR
    if args.command in ("demo", "run"):
        _exit_now(code)
    return code


def _main(args: argparse.Namespace) -> int:
    try:
        if args.command == "preflight":
            return _preflight(args)
        settings = config.load(args.state_dir)
        if args.command == "sql":
            return _sql(settings, args.query, args.format)
        if args.command == "status":
            from cdc.cli.status import status

            return status(settings.state_dir, args.json)
        if args.command == "add-table":
            from cdc.cli.control import add_tables

            return add_tables(settings.state_dir, args.tables, args.source_name)
        if args.command == "erase":
            from cdc.cli.erase import erase

            translators = tuple(split_list(args.translators))
            return erase(settings, args.aggregate, args.id, args.source_name, translators)
        if args.command == "verify":
            from cdc.cli.control import verify

            return verify(settings.state_dir, args.tables, args.source_name, args.budget_rows)
        if args.command == "resync":
            from cdc.cli.control import resync

            return resync(settings.state_dir, args.table, args.source_name, wait=not args.no_wait, only_list=args.list)
        if args.command in ("events", "dlq"):
            from cdc.cli.events import dispatch

            return dispatch(args, settings)
        _setup_logging(settings, args.verbose)
        from cdc.cli import run  # heavy imports (JVM bridge, chDB) only for long-running commands

        if args.command == "demo":
            extra = split_list(args.translators) or settings.translators
            demo_settings = config.load(args.state_dir, translators=("cdc.demo.events", *extra))
            return run.demo(demo_settings, args.duration, args.rate, not args.no_ui)
        if args.command == "ui":
            return run.serve_ui(settings, split_list(args.projections))
        return run.run(_run_settings(args), args.until_caught_up, args.timeout, args.ui)
    except CdcError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _run_settings(args: argparse.Namespace) -> Settings:
    """Only `cdc run` reads the sources of a cdc.toml (--config or CDC_CONFIG)."""
    given = args.config or os.environ.get("CDC_CONFIG")
    settings = config.load(
        args.state_dir,
        config_path=Path(given) if given else None,
        source_dsn=args.source,
        source_name=args.source_name,
        tables=split_list(args.tables),
        translators=split_list(args.translators),
        events=False if args.no_events else None,
        initial_load=args.initial_load,
        outbox_tables=split_list(args.outbox_tables),
        outbox_prefix=args.outbox_prefix,
    )
    if settings.source and (args.source or args.source_name or args.tables):
        raise ConfigError("--config names the sources: drop --source/--source-name/--tables, or drop --config")
    return settings


def _preflight(args: argparse.Namespace) -> int:
    """No settings, no state dir, no log file: preflight only reads the database it is given."""
    from cdc import bootstrap, preflight
    from cdc.preflight import render

    try:
        report = bootstrap.preflight(args.dsn, split_list(args.tables) or None, args.source_name)
    except CdcError as e:
        print(f"error: {e}", file=sys.stderr)
        return preflight.EXIT_BLOCKED
    sys.stdout.write(render.json_text(report) if args.json else render.text(report))
    return report.exit_code


def _exit_now(code: int) -> NoReturn:
    """Every component is stopped by now: leave without waiting on the JVM's shutdown, which can
    hang on a non-daemon Java thread and would keep the process (and the terminal) alive."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def _sql(settings: Settings, query: str, fmt: str) -> int:
    from cdc import bootstrap

    warehouse = bootstrap.warehouse(settings)
    try:
        out = warehouse.query_formatted(query, _FORMATS[fmt])
    finally:
        warehouse.close()
    sys.stdout.write(out.decode("utf-8", errors="replace"))
    sys.stdout.flush()
    return 0
