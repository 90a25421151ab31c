"""Port implementations, one module per driver: postgres (psycopg), kafka (kafka-python), clickhouse
(clickhouse-connect). Driver errors become :mod:`cdc.errors` exceptions here, keeping the cause.
Only :mod:`cdc.bootstrap` builds them."""
