"""Embedded chDB behind a ClickHouse-compatible HTTP endpoint on loopback.

chDB admits one process per data directory (a second process fails with `Code: 76 ... Cannot
lock file <data_dir>/status`), so the long-running bridge owns the store and serves it here;
every other process talks HTTP to it exactly as to a ClickHouse server, e.g.
`clickhouse_connect.get_client(host="127.0.0.1", port=server.port)`.

Inside the owning process, clickhouse-connect's own chDB backend may run next to this server on
the same engine: `clickhouse_connect.get_client(dsn=chdb_dsn(data_dir))`, where
`chdb_dsn` (in `cdc.embedded.endpoint`) gives `chdb://` + the resolved absolute path, e.g.
`chdb:///var/lib/cdc/clickhouse/data` (three slashes; the path is not URL-quoted). The path must
be spelled exactly as here (`os.path.realpath`): chDB hosts one engine per process and rejects a
connect with any other spelling. Rows inserted through one side are read through the other.

Every request runs on its own chDB connection handle (~2 ms to open), so `USE`/`SET` state never
leaks between clients and requests run in parallel; one anchor handle keeps the engine (and the
directory lock) alive between requests. HTTP sessions (`session_id`) are not kept: like a
session-less ClickHouse request, `SET`, `USE` and temporary tables last one request. The engine
itself (the only module that imports `chdb`) is :mod:`cdc.embedded.chdb_engine`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from cdc.embedded import chdb_http as proto
from cdc.embedded.chdb_body import RequestBody, decode_body, take_prefix
from cdc.embedded.chdb_engine import Engine, close_quietly
from cdc.errors import StackError

logger = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        super().__init__(address, _Handler)
        self.engine = engine
        self.display_name = socket.gethostname()
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._live_lock:
            self._live.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self._live_lock:
                self._live.discard(request)

    def drop_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections so they exit."""
        with self._live_lock:
            for sock in self._live:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chdb-http"
    timeout = 300  # an idle keep-alive connection is dropped after this many seconds

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the URL, which may hold user/password: log the path only.
        logger.debug("%s %s", self.command, urlsplit(self.path).path)

    @property
    def _srv(self) -> _Server:
        return cast(_Server, self.server)

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        headers = {key.lower(): value for key, value in self.headers.items()}
        self._body = RequestBody(self.rfile, headers)
        self._request: proto.HttpQuery | None = None
        self._started = False
        try:
            if proto.is_ping(split.path, split.query, self._body.complete):
                self._respond(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
                return
            self._request = request = proto.parse_request(split.query, headers)
            body = decode_body(iter(self._body), headers.get("content-encoding"))
            ctype = headers.get("content-type", "")
            if ctype.startswith("multipart/form-data"):
                form = take_prefix(body, proto.MULTIPART_LIMIT + 1)
                if len(form) > proto.MULTIPART_LIMIT:
                    raise proto.HttpQueryError(proto.NOT_IMPLEMENTED, "multipart/form-data body over 256 MiB")
                self._request = request = proto.with_form_fields(request, proto.parse_multipart(ctype, form))
                body = iter(())
            lead = (request.query + "\n").encode() if request.query else b""
            self._execute(request, itertools.chain([lead], body))
        except Exception as e:
            self._fail(e)

    do_GET = do_POST = do_HEAD = _dispatch

    def _execute(self, request: proto.HttpQuery, chunks: Iterator[bytes]) -> None:
        """Run the `query` parameter + body: a streamed INSERT when it opens with INSERT ... FORMAT."""
        prefix = take_prefix(chunks)
        if not prefix.strip():
            raise proto.HttpQueryError(62, "Empty query. (SYNTAX_ERROR)")
        conn = self._srv.engine.connect(request, readonly=self.command == "GET")
        try:
            insert = proto.split_insert(prefix)
            if insert is None:
                self._query(conn, prefix + b"".join(chunks), request)
            else:
                statement, fmt, offset = insert
                self._insert(conn.send_insert(statement, fmt), itertools.chain([prefix[offset:]], chunks), request)
        finally:
            conn.close()

    def _insert(self, inserter: Any, data: Iterator[bytes], request: proto.HttpQuery) -> None:
        try:
            for chunk in data:
                if chunk:
                    inserter.append(chunk)
            result = inserter.finish()
        except BaseException:
            close_quietly(inserter)
            raise
        stats = {"written_rows": result.rows_written, "written_bytes": result.bytes_written}
        self._respond(200, b"", self._headers(request, None, stats))

    def _query(self, conn: Any, sql: bytes, request: proto.HttpQuery) -> None:
        text = sql.decode("utf-8", "replace")
        fmt = proto.output_format(text, request.default_format)
        if not request.wait_end_of_query and proto.can_stream(text, fmt):
            self._stream(conn.send_query(sql, fmt, params=request.params), request, fmt)
            return
        result = conn.query(sql, fmt, params=request.params)
        headers = self._headers(request, fmt if proto.has_result(text) else None, proto.result_stats(result))
        self._respond(200, result.bytes() or b"", headers)

    def _stream(self, stream: Any, request: proto.HttpQuery, fmt: str) -> None:
        """Send blocks as they come; an error after the headers becomes a tagged exception block."""
        try:
            first = next(stream, None)  # an error here still gets a proper status
            tag = secrets.token_hex(8)
            headers = self._headers(request, fmt, proto.result_stats(first) if first is not None else {})
            self._start(200, headers | {"Transfer-Encoding": "chunked", "X-ClickHouse-Exception-Tag": tag})
            for block in itertools.chain([first] if first is not None else [], stream):
                try:
                    self._write_chunk(block.bytes())
                except OSError:  # BrokenPipe/ConnectionReset: the client went away
                    logger.debug("client went away mid-stream (query %s)", request.query_id)
                    self.close_connection = True
                    return
        except Exception as e:
            if not self._started:
                raise
            message = proto.error_message(e)
            logger.info("query %s failed mid-stream: %s", request.query_id, message[:500])
            # ClickHouse 25.11+ ends the reply normally; clients find the error by the tag.
            self._write_chunk(proto.exception_block(message, tag))
            self.close_connection = True
        finally:
            close_quietly(stream)
        self.wfile.write(b"0\r\n\r\n")

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _headers(self, request: proto.HttpQuery, fmt: str | None, stats: dict[str, Any]) -> dict[str, str]:
        headers = {
            "X-ClickHouse-Query-Id": request.query_id,
            "X-ClickHouse-Timezone": self._srv.engine.timezone,
            "X-ClickHouse-Summary": proto.summary(stats),
            "Content-Type": proto.content_type(fmt or "TabSeparated"),
        }
        if fmt is not None:
            headers["X-ClickHouse-Format"] = fmt
        return headers

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        headers.setdefault("X-ClickHouse-Server-Display-Name", self._srv.display_name)
        if not self._body.complete:
            self.close_connection = True  # the unread rest of the body would poison the next request
            headers["Connection"] = "close"
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self._started = True

    def _respond(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        self._start(status, headers | {"Content-Length": str(len(data))})
        if self.command != "HEAD":
            self.wfile.write(data)

    def _fail(self, error: Exception) -> None:
        if isinstance(error, BrokenPipeError | ConnectionResetError):  # the client left: nobody to answer
            logger.debug("client went away: %s", error)
            self.close_connection = True
            return
        if self._started:  # too late for a status: the client lost the connection
            logger.debug("reply aborted: %s", error)
            self.close_connection = True
            return
        message = proto.error_message(error)
        code = error.code if isinstance(error, proto.HttpQueryError) else proto.error_code(message)
        if code == proto.UNKNOWN_EXCEPTION and not isinstance(error, proto.HttpQueryError):
            logger.exception("unexpected error serving a ClickHouse HTTP request")
        else:
            logger.info("query %s failed: %s", self._request.query_id if self._request else "-", message[:500])
        headers = {"X-ClickHouse-Exception-Code": str(code), "Content-Type": "text/plain; charset=UTF-8"}
        if self._request is not None:
            headers["X-ClickHouse-Query-Id"] = self._request.query_id
        try:
            self._respond(proto.http_status(code), message.encode() + b"\n", headers)
        except OSError:
            self.close_connection = True


class ChdbHttpServer:
    """Owns the chDB store in `data_dir` and serves it over ClickHouse's HTTP protocol."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Open the store, bind the port and serve in a daemon thread; StackError if either is taken."""
        if self._server is not None:
            return
        engine = Engine(self.data_dir)
        try:
            server = _Server((self.host, self.port), engine)
        except OSError as e:
            raise StackError(f"cannot serve chDB on {self.host}:{self.port}: {e.strerror or e}") from e
        try:
            engine.open()
        except BaseException:
            server.server_close()
            raise
        self._server, self._engine = server, engine
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="chdb-http", daemon=True)
        self._thread.start()
        logger.info("chDB store %s served at %s", self.data_dir, self.url)

    def stop(self) -> None:
        """Stop serving, drop open connections and release the store."""
        server, engine, self._server, self._engine = self._server, self._engine, None, None
        if server is not None:
            server.shutdown()
            server.drop_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if engine is not None:
            engine.close()

    def __enter__(self) -> ChdbHttpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
