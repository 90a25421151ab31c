-- The pizza-delivery shop: the operational (OLTP) schema the demo captures.
DO $$ BEGIN
    CREATE TYPE order_status AS ENUM ('placed', 'baking', 'out_for_delivery', 'delivered', 'cancelled');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS customers (
    id          bigserial PRIMARY KEY,
    external_id uuid        NOT NULL DEFAULT gen_random_uuid(),
    name        text        NOT NULL,
    email       text        NOT NULL UNIQUE,
    phone       text,
    address     text        NOT NULL,
    birthday    date,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS products (
    id         serial PRIMARY KEY,
    sku        text          NOT NULL UNIQUE,
    name       text          NOT NULL,
    category   text          NOT NULL,
    price      numeric(10,2) NOT NULL,
    active     boolean       NOT NULL DEFAULT true,
    tags       text[]        NOT NULL DEFAULT '{}',
    thumbnail  bytea,
    updated_at timestamptz   NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id               bigserial PRIMARY KEY,
    customer_id      bigint        NOT NULL REFERENCES customers (id),
    status           order_status  NOT NULL DEFAULT 'placed',
    total            numeric(12,2) NOT NULL DEFAULT 0,
    delivery_address text          NOT NULL,
    notes            jsonb,
    placed_at        timestamptz   NOT NULL DEFAULT now(),
    updated_at       timestamp     NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    delivered_at     timestamptz
);

CREATE TABLE IF NOT EXISTS order_items (
    order_id   bigint        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no    integer       NOT NULL,
    product_id integer       NOT NULL REFERENCES products (id),
    quantity   smallint      NOT NULL CHECK (quantity > 0),
    unit_price numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- The app's outbox (Debezium's layout): events it writes itself, in the transaction of its change.
CREATE TABLE IF NOT EXISTS outbox (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The shop's translators compare old and new rows (status and price changes), so these tables
-- log their whole old row on UPDATE and DELETE.
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE products REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
