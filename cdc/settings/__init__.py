"""Settings: one model for flags, ``CDC_*`` environment variables and ``cdc.toml``, read once.

Unset external endpoints mean embedded: a private PostgreSQL (demo), Tansu for Kafka, chDB for
ClickHouse, all on loopback with their data under the state dir. ``load`` is the one entry point;
a mistake becomes one :class:`~cdc.errors.ConfigError` line naming the file, the key and the fix.

```toml
[[source]]
name = "shop"                       # topic prefix and ClickHouse database (default: the database name)
dsn_env = "SHOP_DSN"                # environment variable holding the DSN (required)
tables = ["public.orders"]          # include list (default: every table with a key)
exclude_tables = ["public.audit"]
exclude_columns = ["public.customers.notes"]
translators = ["cdc.demo.events"]   # domain-event modules (default: none, generic events)
events = true                       # run the domain-event consumer for this source
mask = { "public.customers.email" = "hash", "public.customers.phone" = "redact" }

[masking]
salt_env = "CDC_MASK_SALT"          # unset: a random salt kept in <state dir>/mask_salt

[guardrails]
max_retained_wal_mb = 1024          # `cdc status` warns above this
heartbeat_interval_ms = 1000        # Debezium heartbeats: idle databases still let the slot advance
max_in_flight_records = 200000      # captured, not yet durable in every lane: past it Debezium waits
broker_buffer_records = 150000      # the embedded broker is emptied after this many records
mirror_batch_wait_ms = 100          # the mirror gathers changes this long per insert (0: fresher, more CPU)

[projections]
source = "shop"                     # the source the Dagster projections read
sensor_interval_seconds = 15
```
"""

from cdc.settings.load import load, load_file, projection_settings, source_specs
from cdc.settings.model import DEFAULT_STATE_DIR, Guardrails, Masking, Projections, Settings, split_list
from cdc.settings.sources import MaskRule, SourceSpec

__all__ = [
    "DEFAULT_STATE_DIR",
    "Guardrails",
    "MaskRule",
    "Masking",
    "Projections",
    "Settings",
    "SourceSpec",
    "load",
    "load_file",
    "projection_settings",
    "source_specs",
    "split_list",
]
