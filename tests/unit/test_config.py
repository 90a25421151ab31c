"""Settings: cdc.toml, environment and flags in one model; sources, rules, guardrails, and errors
that name the key to fix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cdc import settings as config
from cdc.debezium.config import ConnectorSettings, connector_properties, redacted
from cdc.errors import ConfigError
from cdc.settings import MaskRule, Settings, SourceSpec, source_specs

GOOD = """
[[source]]
name = "shop"
dsn_env = "SHOP_DSN"
tables = ["public.orders", "public.customers"]
exclude_columns = ["public.customers.notes"]
translators = ["cdc.demo.events"]
mask = { "public.customers.email" = "hash", "public.customers.phone" = "redact" }

[[source]]
dsn_env = "CRM_DSN"
events = false
initial_load = "debezium"
snapshot_events = false

[masking]
salt_env = "MY_SALT"

[guardrails]
max_retained_wal_mb = 256
heartbeat_interval_ms = 5000
mirror_batch_wait_ms = 0

[projections]
source = "shop"
"""
ENV = {"SHOP_DSN": "postgresql://u:hunter2@db/shop", "CRM_DSN": "postgresql://u:pw@db/crm"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cdc.toml"
    path.write_text(text)
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    for key in (
        "CDC_SOURCE_DSN",
        "CDC_CLICKHOUSE_URL",
        "CDC_CONFIG",
        "CDC_TABLES",
        "CDC_EVENTS",
        "CDC_SNAPSHOT_EVENTS",
    ):
        monkeypatch.delenv(key, raising=False)


def _load(path: Path) -> tuple[Settings, tuple[SourceSpec, ...]]:
    settings = config.load(str(path.parent / "state"), config_path=path)
    return settings, source_specs(settings)


def test_a_full_config_reads_into_sources_and_guardrails(tmp_path: Path, env: None) -> None:
    settings, (shop, crm) = _load(_write(tmp_path, GOOD))
    assert shop.name == "shop" and shop.dsn.get_secret_value() == ENV["SHOP_DSN"]
    assert shop.tables == ("public.orders", "public.customers")
    assert shop.exclude_columns == ("public.customers.notes",)
    assert shop.mask == (MaskRule("public.customers.email", "hash"), MaskRule("public.customers.phone", "redact"))
    assert shop.translators == ("cdc.demo.events",) and shop.events is None
    assert crm.name is None and crm.events is False and crm.translators is None
    assert (shop.initial_load, shop.snapshot_events) == ("copy", True)  # the bridge-wide defaults
    assert (crm.initial_load, crm.snapshot_events) == ("debezium", False)
    assert settings.salt_env == "MY_SALT"
    assert settings.max_retained_wal_bytes == 256 * 1024 * 1024
    assert settings.heartbeat_interval_ms == 5000
    assert settings.guardrails.mirror_batch_wait_ms == 0  # 0 is allowed: no gathering
    assert settings.projections.source == "shop"
    # DSNs stay out of reprs and str (and so out of logs and tracebacks)
    assert "hunter2" not in repr(shop) + str(shop) + repr(settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[source]]"),
        ("[[source]]\nname = 'x'\n", "dsn_env is required"),
        ("[[source]]\ndsn_env = 'NOPE_DSN'\n", "NOPE_DSN is not set"),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\ntables = ['orders']\n", "must be written schema.table"),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\nmask = { 'public.c.email' = 'scramble' }\n", 'use "hash" or "redact"'),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\nmask = { 'c.email' = 'hash' }\n", "schema.table.column"),
        (
            "[[source]]\ndsn_env = 'SHOP_DSN'\nexclude_columns = ['public.c.e']\nmask = { 'public.c.e' = 'hash' }\n",
            "both masked and excluded",
        ),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\ncolour = 'red'\n", "unknown key(s) colour"),
        ("[[source]]\nname = 'a'\ndsn_env = 'SHOP_DSN'\n[[source]]\nname = 'a'\ndsn_env = 'CRM_DSN'\n", "used twice"),
        ("[[source]]\nname = 'a.b'\ndsn_env = 'SHOP_DSN'\n", "only letters"),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\n[guardrails]\nmax_retained_wal_mb = -1\n", "positive integer"),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\n[guardrails]\nmirror_batch_wait_ms = -5\n", "0 or a positive integer"),
        (
            "[[source]]\ndsn_env = 'SHOP_DSN'\n[guardrails]\nheartbeat_ms = 5\n",
            "[guardrails]: unknown key(s) heartbeat_ms",
        ),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\n[colours]\nred = 1\n", "unknown key(s) colours"),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\nevents = 'yes'\n", "events must be true or false"),
        ("[[source]]\ndsn_env = 'SHOP_DSN'\nsnapshot_events = 1\n", "snapshot_events must be true or false"),
        ("[[source]]\ndsn_env = 'not a name'\n", "is not an environment variable name"),
        ("[[source]\n", "not valid TOML"),
    ],
)
def test_bad_configs_say_what_to_fix(tmp_path: Path, env: None, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")) as e:
        _load(_write(tmp_path, text))
    assert "\n" not in str(e.value)  # one line, as the CLI prints it
    assert "hunter2" not in str(e.value)


def test_missing_file_is_a_config_error(tmp_path: Path, env: None) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        _load(tmp_path / "nope.toml")


def test_flags_win_over_the_environment_and_secrets_stay_hidden(
    tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDC_SOURCE_DSN", "postgresql://u:fromenv@db/app")
    monkeypatch.setenv("CDC_CLICKHOUSE_URL", "http://default:chpass@ch:8123")
    monkeypatch.setenv("CDC_TABLES", "public.a, public.b")
    monkeypatch.setenv("CDC_EVENTS", "off")
    settings = config.load(str(tmp_path / "state"))
    assert settings.tables == ("public.a", "public.b") and settings.events is False
    assert settings.secret("clickhouse_url") == "http://default:chpass@ch:8123"
    assert "chpass" not in repr(settings) + str(settings) and "fromenv" not in repr(settings)
    flagged = config.load(str(tmp_path / "state"), source_dsn="postgresql://u:fromflag@db/app", tables=("public.t",))
    (spec,) = source_specs(flagged)
    assert (spec.dsn.get_secret_value(), spec.tables) == ("postgresql://u:fromflag@db/app", ("public.t",))
    assert flagged.state_dir == (tmp_path / "state").absolute()


def test_an_unset_dsn_uses_the_default(tmp_path: Path, env: None) -> None:
    single = config.load(str(tmp_path / "state"), source_name="one", tables=("public.t",))
    (spec,) = source_specs(single, "postgresql://localhost/db")
    assert (spec.dsn.get_secret_value(), spec.name, spec.tables, spec.mask) == (
        "postgresql://localhost/db",
        "one",
        ("public.t",),
        (),
    )


def test_masking_and_exclusion_become_connector_properties_without_leaking_the_salt(tmp_path: Path) -> None:
    settings = ConnectorSettings(
        source="shop",
        host="h",
        port=5432,
        user="u",
        password="pw",
        dbname="shop",
        tables=("public.customers",),
        offset_file=tmp_path / "o",
        exclude_columns=("public.customers.notes",),
        mask_hash=("public.customers.email",),
        mask_redact=("public.customers.phone",),
        mask_salt="s3cretsalt",
    )
    props = connector_properties(settings)
    assert props["column.exclude.list"] == r"^(?-i)public\.customers\.notes$"
    assert props["column.mask.hash.v2.SHA-256.with.salt.s3cretsalt"] == r"^(?-i)public\.customers\.email$"
    assert props["column.mask.with.8.chars"] == r"^(?-i)public\.customers\.phone$"
    shown = redacted(props)
    assert "s3cretsalt" not in str(shown) and "pw" not in shown.values()
    assert "s3cretsalt" not in repr(settings)
    with pytest.raises(ConfigError, match="salt"):
        replace(settings, mask_salt="short")


def test_dagster_reads_only_the_projection_section(tmp_path: Path) -> None:
    from cdc.settings import projection_settings

    path = _write(tmp_path, GOOD.replace('source = "shop"\n', 'source = "crm"\nsensor_interval_seconds = 30\n'))
    settings = projection_settings({"CDC_CONFIG": str(path)})  # no DSN variables needed
    assert (settings.source, settings.sensor_interval_seconds) == ("crm", 30)
    assert projection_settings({}).source is None
    with pytest.raises(ConfigError, match="cannot read config"):
        projection_settings({"CDC_CONFIG": str(tmp_path / "missing.toml")})


def test_mask_salt_comes_from_the_environment_or_is_kept_private_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdc.statedir import mask_salt

    state = tmp_path / "state"
    monkeypatch.delenv("TEST_SALT", raising=False)
    first = mask_salt(state, "TEST_SALT").get_secret_value()
    assert len(first) == 32 and mask_salt(state, "TEST_SALT").get_secret_value() == first  # stable across restarts
    assert ((state / "mask_salt").stat().st_mode & 0o777) == 0o600
    assert first not in repr(mask_salt(state, "TEST_SALT"))
    monkeypatch.setenv("TEST_SALT", "fromTheEnv123")
    assert mask_salt(state, "TEST_SALT").get_secret_value() == "fromTheEnv123"


def test_the_environment_wins_over_the_file(tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "events_workers = 2\n[[source]]\ndsn_env = 'SHOP_DSN'\n"
        "[guardrails]\nbroker_buffer_records = 5000\nmax_retained_wal_mb = 256\n"
    )
    path = _write(tmp_path, text)
    settings, _ = _load(path)
    assert (settings.events_workers, settings.guardrails.broker_buffer_records) == (2, 5000)  # the file's
    monkeypatch.setenv("CDC_EVENTS_WORKERS", "3")
    monkeypatch.setenv("CDC_GUARDRAILS__BROKER_BUFFER_RECORDS", "7000")
    settings, _ = _load(path)
    assert (settings.events_workers, settings.guardrails.broker_buffer_records) == (3, 7000)
    assert settings.guardrails.max_retained_wal_mb == 256  # the file's other keys of the section still count
