"""The demo pizza shop: schema, seed data and a load generator that behaves like the shop's app.

Orders move placed -> baking -> out_for_delivery -> delivered; some are cancelled;
prices change now and then; old cancelled orders are purged (deletes cascade to items).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from decimal import Decimal
from importlib import resources

from cdc.adapters.postgres import PostgresSession, PostgresSource

log = logging.getLogger(__name__)

DEMO_DATABASE = "shop"
DEMO_TABLES = ("public.customers", "public.products", "public.orders", "public.order_items", "public.outbox")
DEMO_OUTBOX = ("public.outbox",)  # the app writes its own events there (cdc.domain.authored)
_REASONS = ["customer changed their mind", "address not reachable", "payment declined", "out of dough"]
NEXT_STATUS = {"placed": "baking", "baking": "out_for_delivery", "out_for_delivery": "delivered"}

_PIZZAS = [
    ("margherita", "Margherita", "pizza", "9.50"),
    ("marinara", "Marinara", "pizza", "8.00"),
    ("diavola", "Diavola", "pizza", "11.50"),
    ("quattro-formaggi", "Quattro Formaggi", "pizza", "12.00"),
    ("capricciosa", "Capricciosa", "pizza", "12.50"),
    ("funghi", "Funghi", "pizza", "10.50"),
    ("calzone", "Calzone", "pizza", "13.00"),
    ("tiramisu", "Tiramisu", "dessert", "6.00"),
    ("cola", "Cola 0.5l", "drink", "3.00"),
    ("lemonade", "Lemonade 0.5l", "drink", "3.50"),
]
_FIRST = ["Ada", "Linus", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances"]
_LAST = ["Lovelace", "Torvalds", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen"]
_STREETS = ["Via Roma", "Main St", "Baker St", "Elm Rd", "Harbour Way", "Mill Lane"]


def install_schema(source: PostgresSource) -> None:
    sql = resources.files("cdc.demo").joinpath("schema.sql").read_text()
    source.execute(sql)


def install(source: PostgresSource) -> None:
    """The shop's schema and, when it is empty, its products and first customers and orders."""
    install_schema(source)
    with PostgresSession(source) as session:
        seed(session)


def seed(session: PostgresSession, customers: int = 200) -> None:
    """Products and a first set of customers and orders, if the shop is empty."""
    if session.execute("SELECT count(*) FROM products")[0][0]:
        return
    with session.transaction():
        for sku, name, category, price in _PIZZAS:
            session.execute(
                "INSERT INTO products (sku, name, category, price, tags, thumbnail) VALUES (%s, %s, %s, %s, %s, %s)",
                (sku, name, category, price, [category, "classic"], sku.encode()[:8]),
            )
    rng = random.Random(7)
    for _ in range(customers):
        new_customer(session, rng)
    for _ in range(customers):
        place_order(session, rng)


def new_customer(session: PostgresSession, rng: random.Random) -> None:
    n = rng.randrange(10**9)
    name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    session.execute(
        "INSERT INTO customers (name, email, phone, address, birthday) VALUES (%s, %s, %s, %s, date '1950-01-01' + %s)",
        (
            name,
            f"c{n}@example.com",
            f"+39 {n:010d}",
            f"{rng.randint(1, 200)} {rng.choice(_STREETS)}",
            rng.randint(0, 20000),
        ),
    )


def place_order(session: PostgresSession, rng: random.Random) -> None:
    """Like the shop's app: pick the pizzas, price the order, then store order and lines together."""
    menu = session.execute("SELECT id, price FROM products WHERE active ORDER BY id")
    if not menu:
        return
    lines = [
        (product_id, rng.randint(1, 3), price)
        for product_id, price in (rng.choice(menu) for _ in range(rng.randint(1, 4)))
    ]
    total = sum((quantity * price for _, quantity, price in lines), Decimal(0))
    with session.transaction():
        rows = session.execute(
            "INSERT INTO orders (customer_id, delivery_address, notes, total) SELECT id, address, %s, %s"
            " FROM customers ORDER BY random() LIMIT 1 RETURNING id",
            (json.dumps({"channel": rng.choice(["app", "web", "phone"]), "ring_bell": rng.random() < 0.5}), total),
        )
        if not rows:
            return
        order_id = rows[0][0]
        for line_no, (product_id, quantity, price) in enumerate(lines, start=1):
            session.execute(
                "INSERT INTO order_items (order_id, line_no, product_id, quantity, unit_price)"
                " VALUES (%s, %s, %s, %s, %s)",
                (order_id, line_no, product_id, quantity, price),
            )


def advance_order(session: PostgresSession, rng: random.Random) -> None:
    rows = session.execute(
        "SELECT id, status::text FROM orders WHERE status IN ('placed', 'baking', 'out_for_delivery')"
        " ORDER BY id LIMIT 1 OFFSET %s",
        (rng.randint(0, 20),),
    )
    if not rows:
        return
    order_id, status = rows[0]
    new = NEXT_STATUS[status]
    delivered = ", delivered_at = now()" if new == "delivered" else ""
    session.execute(
        f"UPDATE orders SET status = %s, updated_at = now() AT TIME ZONE 'utc'{delivered} WHERE id = %s",
        (new, order_id),
    )


def cancel_order(session: PostgresSession, rng: random.Random) -> None:
    """The app cancels and says why in one transaction: the reason goes to its outbox as an authored
    event (no row diff carries it)."""
    with session.transaction():
        rows = session.execute(
            "UPDATE orders SET status = 'cancelled', updated_at = now() AT TIME ZONE 'utc' WHERE id = ("
            "SELECT id FROM orders WHERE status IN ('placed', 'baking') ORDER BY random() LIMIT 1) RETURNING id"
        )
        if not rows:
            return
        order_id = rows[0][0]
        payload = {
            "order_id": order_id,
            "reason": rng.choice(_REASONS),
            "cancelled_by": rng.choice(["customer", "shop"]),
        }
        session.execute(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ('order', %s, %s, %s)",
            (str(order_id), "CancellationReasonGiven", json.dumps(payload)),
        )


def change_price(session: PostgresSession, rng: random.Random) -> None:
    session.execute(
        "UPDATE products SET price = greatest(1, price + %s), updated_at = now() WHERE id = ("
        "SELECT id FROM products ORDER BY random() LIMIT 1)",
        (rng.choice(["-0.50", "0.50", "1.00"]),),
    )


def purge_cancelled(session: PostgresSession, rng: random.Random) -> None:
    session.execute(
        "DELETE FROM orders WHERE id = (SELECT id FROM orders WHERE status = 'cancelled' ORDER BY id LIMIT 1)"
    )


_ACTIONS = [
    (new_customer, 8),
    (place_order, 30),
    (advance_order, 50),
    (cancel_order, 4),
    (change_price, 2),
    (purge_cancelled, 6),
]


class LoadGenerator:
    """Runs shop actions at about ``rate`` per second on its own thread until stopped."""

    def __init__(self, source: PostgresSource, rate: float = 20.0, seed_value: int | None = None) -> None:
        self._source = source
        self._rate = rate
        self._rng = random.Random(seed_value)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-load", daemon=True)
        self.actions = 0
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        funcs = [f for f, _ in _ACTIONS]
        weights = [w for _, w in _ACTIONS]
        interval = 1.0 / self._rate
        with PostgresSession(self._source) as session:
            next_at = time.monotonic()
            while not self._stop.is_set():
                action = self._rng.choices(funcs, weights)[0]
                try:
                    action(session, self._rng)
                    self.actions += 1
                except Exception as e:  # the shop's app keeps going after a failed request
                    self.errors += 1
                    log.warning("demo action %s failed: %s", action.__name__, e)
                next_at += interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
