"""Supervisors of the processes the bridge starts itself when no external service is configured.

The Kafka-protocol broker (Tansu), a private PostgreSQL cluster for the demo and tests, the
process that owns the embedded ClickHouse store (chDB) with its HTTP protocol, the Dagster UI,
and the helpers they share (the death signal for children, loopback ports, the endpoint file).
"""
