"""PostgreSQL → Debezium → Kafka → ClickHouse change-data-capture bridge."""

__version__ = "0.1.0"
