"""The soak's own schema and application: an insert-only table, an update-heavy one, inserts and deletes.

Nothing here is the demo shop: a small ledger with the shapes that hide loss differently. Final
balances hide lost intermediate updates; an insert-only table does not; deletes must vanish.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id bigserial PRIMARY KEY, sensor int NOT NULL, value numeric(12,2), note text, taken_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance bigint NOT NULL, version int NOT NULL, owner text);
CREATE TABLE IF NOT EXISTS sessions (id bigserial PRIMARY KEY, account int NOT NULL, token text NOT NULL);
INSERT INTO accounts SELECT g, 0, 0, 'owner ' || g FROM generate_series(1, 500) g ON CONFLICT DO NOTHING;
"""

# column -> kind, for the parity checksums (bench/parity.py)
TABLES: dict[str, dict[str, str]] = {
    "readings": {"id": "int", "sensor": "int", "value": "decimal", "note": "text", "taken_at": "ts"},
    "accounts": {"id": "int", "balance": "int", "version": "int", "owner": "text"},
    "sessions": {"id": "int", "account": "int", "token": "text"},
}


@dataclass
class Counts:
    transactions: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    errors: int = 0  # transactions that failed (the database restarting): retried, never counted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, inserted: int = 0, updated: int = 0, deleted: int = 0) -> None:
        with self.lock:
            self.transactions += 1
            self.inserted += inserted
            self.updated += updated
            self.deleted += deleted


class Application:
    """Writer threads, unthrottled unless ``rate`` (transactions/s per thread) is given."""

    def __init__(self, dsn: str, threads: int = 2, rate: float = 0.0, seed: int = 1, batch: int = 200) -> None:
        self.dsn = dsn
        self._batch = batch  # at most this many rows per insert transaction
        self.counts = Counts()
        self._rate = rate
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(random.Random(seed + i),), name=f"writer-{i}", daemon=True)
            for i in range(threads)
        ]

    def install(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self, rnd: random.Random) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                self._transaction(conn, rnd)
            except psycopg.Error:  # the database restarted under us: count it, reconnect, go on
                self.counts.errors += 1
                conn = None
                self._stop.wait(0.5)
                continue
            if self._rate:
                self._stop.wait(1.0 / self._rate)

    def _transaction(self, conn: psycopg.Connection[tuple[object, ...]], rnd: random.Random) -> None:
        kind = rnd.random()
        with conn.transaction():
            if kind < 0.6:  # insert-heavy
                n = rnd.randint(max(1, self._batch // 4), self._batch)
                conn.execute(
                    "INSERT INTO readings (sensor, value, note, taken_at) SELECT (random() * 100)::int,"
                    " round((random() * 100000)::numeric, 2), md5(random()::text), now() - random() * interval '1 day'"
                    " FROM generate_series(1, %s)",
                    (n,),
                )
                self.counts.add(inserted=n)
            elif kind < 0.9:  # update-heavy: many small balance changes
                ids = [rnd.randint(1, 500) for _ in range(20)]
                cur = conn.execute(
                    "UPDATE accounts SET balance = balance + 1, version = version + 1 WHERE id = ANY(%s)", (ids,)
                )
                self.counts.add(updated=cur.rowcount)
            else:  # sessions come and go
                conn.execute(
                    "INSERT INTO sessions (account, token) SELECT (random() * 499)::int + 1, md5(random()::text)"
                    " FROM generate_series(1, 20)"
                )
                cur = conn.execute(
                    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ORDER BY random() LIMIT 10)"
                )
                self.counts.add(inserted=20, deleted=cur.rowcount)
