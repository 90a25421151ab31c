"""Shop traffic against any PostgreSQL: `python -m cdc.demo.load [--dsn DSN] [--rate N] [--duration S]`.

The compose service `shop-load` runs it against the `postgres` service; `cdc demo` does the same
against its embedded cluster. It installs the shop schema if missing (idempotent), seeds an empty
shop, then runs `LoadGenerator` until the duration ends or SIGTERM/SIGINT arrives. With
`--alive-file` it touches that file every few seconds (the container's health check reads it).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from cdc.adapters.postgres import PostgresSession, PostgresSource, redact_dsn
from cdc.demo import shop
from cdc.errors import CdcError

ALIVE_EVERY_S = 5.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cdc.demo.load", description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default=os.environ.get("CDC_SOURCE_DSN"), help="PostgreSQL DSN (default: CDC_SOURCE_DSN)")
    p.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("CDC_LOAD_RATE", "20")),
        help="shop actions per second (default: CDC_LOAD_RATE or 20)",
    )
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default: until stopped)")
    p.add_argument("--alive-file", type=Path, default=None, help="file touched while the load runs")
    return p.parse_args(argv)


def run(dsn: str, rate: float, duration: float | None, alive: Path | None, stop: threading.Event) -> int:
    source = PostgresSource(dsn)
    shop.install_schema(source)
    with PostgresSession(source) as session:
        shop.seed(session)
    load = shop.LoadGenerator(source, rate)
    print(f"shop load: {rate:g} actions/s against {redact_dsn(dsn)}", flush=True)
    load.start()
    deadline = time.monotonic() + duration if duration else float("inf")
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            if alive is not None:
                alive.touch()
            stop.wait(min(ALIVE_EVERY_S, max(0.0, deadline - time.monotonic())))
    finally:
        load.stop()
    print(f"shop load: {load.actions:,} actions, {load.errors:,} failed", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.dsn:
        print("error: pass --dsn or set CDC_SOURCE_DSN", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return run(args.dsn, args.rate, args.duration, args.alive_file, stop)
    except CdcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
