"""ClickHouse HTTP protocol, the pure half: request parsing and response shaping.

`chdb_server` executes and `chdb_body` reads the body; this module only decides what to
execute and how to answer, so it imports no engine and does no IO. The rules
mimic ClickHouse's own HTTP handler:

* the statement is the `query` URL parameter followed by a newline and the request body, or the
  body alone; an `INSERT ... FORMAT <fmt>` head makes everything after it the data (the data
  starts after the first newline, else after the whitespace);
* URL parameters are settings, except `param_<name>` (query parameters) and the transport-only
  names in `TRANSPORT_PARAMS`;
* `Content-Encoding` gzip/deflate/lz4/zstd/br applies to the whole body, which clickhouse-connect
  sends as a series of concatenated frames.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

# Parameters the HTTP layer consumes: never forwarded to the engine as settings.
TRANSPORT_PARAMS = frozenset(
    {
        "query", "database", "default_format", "query_id", "user", "password", "quota_key", "role",
        "session_id", "session_timeout", "session_check", "compress", "decompress", "buffer_size",
        "wait_end_of_query", "client_protocol_version", "enable_http_compression", "http_zlib_compression_level",
        "send_progress_in_http_headers", "http_headers_progress_interval_ms", "add_http_cors_header",
        "cancel_http_readonly_queries_on_client_close", "http_response_buffer_size", "stacktrace",
    }
)  # fmt: skip
STREAM_SAFE_FORMATS = frozenset({"Native", "TabSeparated", "TSV", "TabSeparatedRaw", "TSVRaw", "CSV", "RowBinary",
    "JSONEachRow", "JSONCompactEachRow", "JSONStringsEachRow", "LineAsString"})  # fmt: skip
CANNOT_PARSE = 27  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
PREFIX_LIMIT = 1 << 20  # bytes of body inspected for an INSERT ... FORMAT head

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INSERT_HEAD = re.compile(rb"^\s*(INSERT\s+INTO\s.{0,65536}?)\bFORMAT\s+(\w+)(?=\s|$)", re.I | re.S)
_NOT_A_DATA_HEAD = re.compile(rb"\b(VALUES|SELECT)\b", re.I)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.I)
_COMMENTS = re.compile(r"^(\s+|--[^\n]*\n?|/\*.*?\*/)+", re.S)
_ERROR_CODE = re.compile(r"Code: (\d+)\.")
_RESULT_KEYWORDS = frozenset({"SELECT", "WITH", "FROM", "SHOW", "DESC", "DESCRIBE", "EXPLAIN", "EXISTS", "CHECK",
    "KILL"})  # fmt: skip
_STREAM_KEYWORDS = frozenset({"SELECT", "WITH", "FROM"})

UNKNOWN_EXCEPTION, BAD_ARGUMENTS, NOT_IMPLEMENTED, CANNOT_DECOMPRESS, UNKNOWN_SETTING = 1002, 36, 48, 271, 115
# exceptionCodeToHTTPStatus.cpp of ClickHouse 26, by numeric code.
_STATUS_BY_CODE: dict[int, int] = {194: 401, 192: 403, 193: 403, 516: 403, 512: 403, 497: 403, 229: 413, 48: 501,
    209: 503, 76: 503, 439: 503, 381: 411, 159: 408, 779: 415}  # fmt: skip
_STATUS_BY_CODE.update(dict.fromkeys((36, 427, 6, 25, 26, 38, 41, 72, 441, 675, 676, 27, 376, 15, 44, 37, 123, 8,
    167, 168, 223, 62, 117, 53, 321), 400))  # fmt: skip
_STATUS_BY_CODE.update(dict.fromkeys((60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511), 404))
_CONTENT_TYPES = {"TabSeparated": "text/tab-separated-values", "TSV": "text/tab-separated-values", "CSV": "text/csv",
    "JSON": "application/json", "JSONCompact": "application/json", "JSONEachRow": "application/x-ndjson",
    "XML": "application/xml", "Native": "application/octet-stream", "RowBinary": "application/octet-stream",
    "Parquet": "application/octet-stream", "Arrow": "application/octet-stream"}  # fmt: skip


class HttpQueryError(Exception):
    """A request the endpoint rejects before the engine sees it; carries a ClickHouse error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"Code: {code}. DB::Exception: {message}")
        self.code = code


@dataclass(frozen=True)
class HttpQuery:
    """What one HTTP request asks for, minus its body."""

    query: str | None
    database: str | None
    default_format: str
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    query_id: str = ""
    wait_end_of_query: bool = False


def parse_request(query_string: str, headers: Mapping[str, str]) -> HttpQuery:
    """Split URL parameters into query, settings and `param_` bindings (headers are lower-cased)."""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    values = dict(pairs)
    if values.get("decompress", "0") not in ("", "0"):
        raise HttpQueryError(NOT_IMPLEMENTED, "ClickHouse-native compressed bodies (decompress=1) are not supported")
    settings: dict[str, str] = {}
    params: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("param_"):
            params[key[6:]] = value
        elif key not in TRANSPORT_PARAMS:
            if not _SETTING_NAME.match(key):
                raise HttpQueryError(UNKNOWN_SETTING, f"Unknown setting {key!r}")
            settings[key] = value
    return HttpQuery(
        query=values.get("query") or None,
        database=values.get("database") or headers.get("x-clickhouse-database") or None,
        default_format=values.get("default_format") or headers.get("x-clickhouse-format") or "TabSeparated",
        settings=settings,
        params=params,
        query_id=values.get("query_id") or secrets.token_hex(16),
        wait_end_of_query=values.get("wait_end_of_query", "0") not in ("", "0"),
    )


MULTIPART_LIMIT = 256 * 1024 * 1024


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The text fields of a multipart/form-data body, in order (clickhouse-connect sends long
    queries and their ``param_*`` bindings this way). File parts are external tables: refused."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise HttpQueryError(CANNOT_PARSE, "malformed multipart/form-data body")
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_filename() is not None:
            raise HttpQueryError(NOT_IMPLEMENTED, f"external data tables (form file {name!r}) are not supported")
        if not isinstance(name, str):
            raise HttpQueryError(CANNOT_PARSE, "a multipart/form-data field without a name")
        payload = part.get_payload(decode=True)
        fields.append((name, payload.decode("utf-8") if isinstance(payload, bytes) else str(payload)))
    return fields


def with_form_fields(request: HttpQuery, fields: list[tuple[str, str]]) -> HttpQuery:
    """``request`` with form fields applied like URL parameters (``query``, ``param_*``, settings)."""
    query, params, settings = request.query, dict(request.params), dict(request.settings)
    for key, value in fields:
        if key == "query":
            query = value
        elif key.startswith("param_"):
            params[key[6:]] = value
        elif key not in TRANSPORT_PARAMS:
            if not _SETTING_NAME.match(key):
                raise HttpQueryError(UNKNOWN_SETTING, f"Unknown setting {key!r}")
            settings[key] = value
    return dataclasses.replace(request, query=query, params=params, settings=settings)


def is_ping(path: str, query_string: str, body_complete: bool) -> bool:
    """`/ping`, or a bare `/` with neither a `query` parameter nor a body, answers `Ok.`."""
    if path in ("/ping", "/replicas_status"):
        return True
    return body_complete and not any(key == "query" and value for key, value in parse_qsl(query_string))


def split_insert(prefix: bytes) -> tuple[str, str, int] | None:
    """(`INSERT INTO ...` without FORMAT, format name, offset where the data starts), or None."""
    match = _INSERT_HEAD.match(prefix)
    if match is None or _NOT_A_DATA_HEAD.search(match.group(1)):
        return None
    offset = match.end()
    while offset < len(prefix) and prefix[offset] in b" \t\r":
        offset += 1
    if offset < len(prefix) and prefix[offset] == ord("\n"):
        offset += 1
    return match.group(1).decode("utf-8", "replace").strip(), match.group(2).decode(), offset


def output_format(sql: str, default_format: str) -> str:
    """The query's FORMAT clause, else the default; never one of chdb's Python-object formats."""
    match = _TRAILING_FORMAT.search(sql[-4096:])
    fmt = match.group(1) if match else default_format
    if fmt.lower() in ("dataframe", "arrowtable", "datastore"):
        raise HttpQueryError(73, f"Unknown format {fmt}. (UNKNOWN_FORMAT)")
    return fmt


def _quote(value: str, quote: str = "'") -> str:
    return quote + value.replace("\\", "\\\\").replace(quote, "\\" + quote) + quote


def session_statements(request: HttpQuery, readonly: bool) -> list[str]:
    """USE/SET statements that give a fresh engine handle the request's context (GET is readonly=2)."""
    statements = [f"USE {_quote(request.database, '`')}"] if request.database else []
    statements += [f"SET {name} = {_quote(value)}" for name, value in request.settings.items()]
    if readonly and "readonly" not in request.settings:
        statements.append("SET readonly = 2")
    return statements


def result_stats(result: Any) -> dict[str, int | float]:
    """Summary numbers of a chdb query result (or streamed block)."""
    return {"read_rows": result.rows_read(), "read_bytes": result.bytes_read(), "written_rows": result.rows_written(),
            "written_bytes": result.bytes_written(), "elapsed_ns": result.elapsed() * 1e9}  # fmt: skip


def leading_keyword(sql: str) -> str:
    text = _COMMENTS.sub("", sql[:8192], count=1).lstrip("(")
    return text.split(None, 1)[0].upper() if text.strip() else ""


def has_result(sql: str) -> bool:
    """Whether ClickHouse would answer with a result set (and an X-ClickHouse-Format header)."""
    return leading_keyword(sql) in _RESULT_KEYWORDS


def can_stream(sql: str, fmt: str) -> bool:
    """chdb streams blocks as self-contained encodings: only header-less formats concatenate."""
    return fmt in STREAM_SAFE_FORMATS and leading_keyword(sql) in _STREAM_KEYWORDS


def error_message(error: BaseException) -> str:
    text = str(error)
    start = text.find("Code: ")
    return (text[start:] if start >= 0 else f"Code: {UNKNOWN_EXCEPTION}. DB::Exception: {text}").strip()


def error_code(message: str) -> int:
    match = _ERROR_CODE.search(message)
    return int(match.group(1)) if match else UNKNOWN_EXCEPTION


def http_status(code: int) -> int:
    return _STATUS_BY_CODE.get(code, 500)


def content_type(fmt: str) -> str:
    base = _CONTENT_TYPES.get(fmt, "text/plain")
    return base if base == "application/octet-stream" else f"{base}; charset=UTF-8"


def exception_block(message: str, tag: str) -> bytes:
    """A mid-stream error in the tagged form ClickHouse 25.11+ writes and clickhouse-connect scans for."""
    body = message.encode() + b"\n"
    return b"__exception__\r\n%s\r\n%s%d %s\r\n__exception__\r\n" % (tag.encode(), body, len(body), tag.encode())


def summary(stats: Mapping[str, int | float]) -> str:
    """X-ClickHouse-Summary: ClickHouse sends every number as a JSON string."""
    return json.dumps({key: str(int(value)) for key, value in stats.items()}, separators=(",", ":"))
