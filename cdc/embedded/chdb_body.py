"""The ClickHouse HTTP request body: read as it arrives (sized or chunked) and decompressed.

The IO half beside `chdb_http`'s parsing: `chdb_server` reads a body through `RequestBody`,
undoes its `Content-Encoding` with `decode_body` (clickhouse-connect sends several
concatenated frames) and looks at the head with `take_prefix` before streaming the rest.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from cdc.embedded.chdb_http import BAD_ARGUMENTS, CANNOT_DECOMPRESS, NOT_IMPLEMENTED, PREFIX_LIMIT, HttpQueryError


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def readline(self, size: int = -1, /) -> bytes: ...


class RequestBody:
    """The request body as chunks (Content-Length or chunked); `complete` once fully read."""

    def __init__(self, rfile: Readable, headers: Mapping[str, str], chunk_size: int = 1 << 16) -> None:
        self._rfile = rfile
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        self._remaining = 0 if self._chunked else int(headers.get("content-length") or 0)
        self._chunk_size = chunk_size
        self.complete = not self._chunked and self._remaining == 0

    def __iter__(self) -> Iterator[bytes]:
        return self._iter_chunked() if self._chunked else self._iter_sized()

    def _iter_sized(self) -> Iterator[bytes]:
        while self._remaining > 0:
            data = self._rfile.read(min(self._chunk_size, self._remaining))
            if not data:
                raise HttpQueryError(BAD_ARGUMENTS, "Request body ended before Content-Length")
            self._remaining -= len(data)
            yield data
        self.complete = True

    def _iter_chunked(self) -> Iterator[bytes]:
        while not self.complete:
            line = self._rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError as e:
                raise HttpQueryError(BAD_ARGUMENTS, "Malformed chunked request body") from e
            if size == 0:
                while self._rfile.readline(1024).strip():  # trailers
                    pass
                self.complete = True
                return
            data = self._rfile.read(size)
            self._rfile.readline(8)
            if len(data) < size:
                raise HttpQueryError(BAD_ARGUMENTS, "Chunked request body ended early")
            yield data


def _zlib(wbits: int) -> Callable[[], Any]:
    return lambda: zlib.decompressobj(wbits=wbits)


def _decompressor_factory(encoding: str) -> Callable[[], Any]:
    if encoding in ("gzip", "x-gzip"):
        return _zlib(31)
    if encoding == "deflate":
        return _zlib(15)
    try:
        if encoding == "lz4":
            import lz4.frame

            return lz4.frame.LZ4FrameDecompressor  # type: ignore[no-any-return]
        if encoding == "zstd":
            from backports import zstd

            return zstd.ZstdDecompressor
        if encoding == "br":
            import brotli

            return _BrotliFrames.factory(brotli)
    except ImportError as e:
        raise HttpQueryError(NOT_IMPLEMENTED, f"Content-Encoding {encoding} needs a package: {e.name}") from e
    raise HttpQueryError(BAD_ARGUMENTS, f"Unknown HTTP content encoding: {encoding!r}")


class _BrotliFrames:
    """Brotli's decompressor in the eof/unused_data shape the other codecs share."""

    def __init__(self, brotli: Any) -> None:
        self._d = brotli.Decompressor()
        self.eof = False
        self.unused_data = b""

    @classmethod
    def factory(cls, brotli: Any) -> Callable[[], _BrotliFrames]:
        return lambda: cls(brotli)

    def decompress(self, data: bytes) -> bytes:
        out: bytes = self._d.process(data)
        self.eof = bool(self._d.is_finished())
        return out


def decode_body(chunks: Iterator[bytes], encoding: str | None) -> Iterator[bytes]:
    """Decompress a Content-Encoding'd body that may hold several concatenated frames."""
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        yield from chunks
        return
    factory = _decompressor_factory(encoding)
    decoder = factory()
    try:
        for chunk in chunks:
            while chunk:
                out = decoder.decompress(chunk)
                if out:
                    yield out
                chunk = decoder.unused_data if decoder.eof else b""
                if decoder.eof:
                    decoder = factory()
    except HttpQueryError:
        raise
    except Exception as e:
        raise HttpQueryError(CANNOT_DECOMPRESS, f"Cannot decompress {encoding} request body: {e}") from e


def take_prefix(chunks: Iterator[bytes], limit: int = PREFIX_LIMIT) -> bytes:
    """Read chunks until `limit` bytes are buffered or the body ends."""
    buffered = bytearray()
    for chunk in chunks:
        buffered += chunk
        if len(buffered) >= limit:
            break
    return bytes(buffered)
