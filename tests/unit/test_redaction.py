"""Secrets never shown: DSNs parsed by libpq's own rules, ClickHouse URLs, driver errors (issue 11, part 7)."""

from __future__ import annotations

from urllib.parse import quote

import psycopg
import pytest

from cdc.adapters.clickhouse import redact_url
from cdc.adapters.postgres import PostgresSource, _driver_message, redact_dsn
from cdc.errors import SourceError

PASSWORDS = ["p@ss w'or\"d", "with space", "a@b@c", "semi;colon=eq", "back\\slash", "pct%41", "ünï©ødé"]


def _fragments(secret: str) -> list[str]:
    """Every 3-character piece of the password: not even part of it may show."""
    return [secret[i : i + 3] for i in range(len(secret) - 2)] or [secret]


def _key_value(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace("'", "\\'")
    return f"host=db.internal port=5432 user=app dbname=shop password='{escaped}'"


def _url(password: str) -> str:
    return f"postgresql://app:{quote(password, safe='')}@db.internal:5432/shop?sslmode=prefer"


@pytest.mark.parametrize("password", PASSWORDS)
@pytest.mark.parametrize("form", [_key_value, _url])
def test_a_dsn_is_shown_without_any_part_of_its_password(password: str, form: object) -> None:
    dsn = form(password)  # type: ignore[operator]
    assert psycopg.conninfo.conninfo_to_dict(dsn)["password"] == password  # libpq reads what we meant
    shown = redact_dsn(dsn)
    assert "db.internal" in shown and "app" in shown and "shop" in shown and "***" in shown
    for piece in _fragments(password) + _fragments(quote(password, safe="")):
        assert piece not in shown.replace("***", ""), (piece, shown)


def test_a_dsn_libpq_cannot_parse_is_not_shown_at_all() -> None:
    assert redact_dsn("host=db password='secret-unterminated") == "(a DSN that libpq cannot parse)"


def test_a_connection_error_for_a_malformed_dsn_does_not_quote_it() -> None:
    dsn = "host=127.0.0.1 port=9 password=x extra-hunter2-secret"
    with pytest.raises(SourceError) as e:
        PostgresSource(dsn).query("SELECT 1")
    assert "hunter2" not in str(e.value) and "cannot connect" in str(e.value)
    try:
        psycopg.conninfo.conninfo_to_dict("host=x extra-hunter2-secret")
    except psycopg.ProgrammingError as err:
        assert "hunter2" in str(err)  # libpq itself would have shown it
        assert "hunter2" not in _driver_message(err)


def test_clickhouse_urls_lose_only_their_password() -> None:
    assert redact_url("http://default:s3cr@t@127.0.0.1:8123/?x=1") == "http://default:***@127.0.0.1:8123/?x=1"
    assert redact_url("http://127.0.0.1:18123") == "http://127.0.0.1:18123"
