"""A minimal HTTP/1.1 keep-alive client for the scoring hot path.

Forwarding a scoring call is one POST to one known origin, many times a second. General clients pay
for generality on every request: in ``bench/scoring/results.md`` (both clients on the same code in one run,
32 concurrent calls) the host spends 1.7-1.9 ms of CPU per request with httpx 0.28 and 0.4-0.7 ms with
this client, and at 50 ms model time httpx holds 83% of direct throughput (p50 +6.8 ms) where this holds
all of it. Everything else — ARM, webhooks — uses httpx.

What it does, deliberately no more: POST with a body; responses with Content-Length, chunked, or
delimited by close; 1xx responses skipped; keep-alive with an idle pool per origin (LIFO, expiring
idle connections); at most ``max_connections`` in flight; one whole-exchange timeout; a request that
fails on a *reused* connection before any response byte arrives (the server closed it while idle)
is sent once more on a new connection. No proxies, redirects, cookies or compression (it sends no
Accept-Encoding, so servers answer uncompressed).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.errors import TransportError, TransportTimeout

HEAD_LIMIT = 64 * 1024
USER_AGENT = "tuneflow/1"


class _Stale(TransportError):
    """A reused connection turned out closed before any response byte arrived (retried here, never raised on)."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # names in lower case; repeated headers joined with ", "
    content: bytes
    reason: str = ""


@dataclass(frozen=True)
class StreamedReply:
    """A reply whose body is read as it arrives (``body`` yields its bytes, de-chunked)."""

    status: int
    headers: Mapping[str, str]
    body: AsyncIterator[bytes]
    reason: str = ""


async def _head(reader: asyncio.StreamReader) -> tuple[str, int, str, dict[str, str]]:
    """The status line and headers of the next final (non-1xx) answer."""
    first = True
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if first and not exc.partial:
                raise _Stale("stale connection") from None
            raise
        except ConnectionResetError:
            if first:
                raise _Stale("stale connection") from None
            raise
        first = False
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        status = int(code)
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if 100 <= status < 200 and status != 101:
            continue  # an interim answer; the real one follows
        return version, status, reason, headers


def _keep_alive(version: str, headers: Mapping[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    return ("close" not in connection) if version == "HTTP/1.1" else ("keep-alive" in connection)


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


Origin = tuple[str, str, int]


class Http1Client:
    def __init__(self, ssl_context: ssl.SSLContext | None = None, *, max_connections: int = 128,
                 max_idle_per_origin: int = 64, idle_expiry_s: float = 30.0,
                 max_body: int = 64 * 1024 * 1024) -> None:
        self._ssl = ssl_context or ssl.create_default_context()
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_idle_per_origin
        self._idle_expiry = idle_expiry_s
        self._max_body = max_body
        self._idle: dict[Origin, list[_Conn]] = {}
        self.connections_opened = 0

    def _request(self, url: str, body: bytes, headers: Mapping[str, str]) -> tuple[Origin, bytes]:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"unsupported URL scheme or host: {scheme}://")
        port = parts.port or (443 if scheme == "https" else 80)
        origin: Origin = (scheme, parts.hostname, port)
        default = 443 if scheme == "https" else 80
        host = parts.hostname if port == default else f"{parts.hostname}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
                 f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
        return origin, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
        origin, request = self._request(url, body, headers)
        try:
            async with self._slots, asyncio.timeout(timeout):
                return await self._exchange(origin, request)
        except TimeoutError:
            raise TransportTimeout(f"no complete answer within {timeout:g} s") from None

    async def stream(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> StreamedReply:
        """POST, and hand the body over as it arrives; ``timeout`` bounds the whole exchange, body included.
        The connection goes back to the pool once the body has been read to its end."""
        origin, request = self._request(url, body, headers)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._slots.acquire()
        try:
            async with asyncio.timeout_at(deadline):
                conn, (version, status, reason, head) = await self._open(origin, request)
        except TimeoutError:
            self._slots.release()
            raise TransportTimeout(f"no answer within {timeout:g} s") from None
        except BaseException:
            self._slots.release()
            raise
        return StreamedReply(status, head, self._body(origin, conn, head, status=status,
                                                      keep=_keep_alive(version, head), deadline=deadline), reason)

    async def _body(self, origin: Origin, conn: _Conn, head: Mapping[str, str], *, status: int, keep: bool,
                    deadline: float) -> AsyncIterator[bytes]:
        reader, done = conn.reader, False

        async def within(step: Awaitable[bytes]) -> bytes:
            # each read gets what is left of the exchange's time (a timeout scope cannot span the yields:
            # between them the caller's code runs on the same task)
            left = deadline - asyncio.get_running_loop().time()
            return await asyncio.wait_for(step, max(0.0, left))

        try:
            if status in (204, 304):
                pass
            elif "chunked" in head.get("transfer-encoding", "").lower():
                while True:
                    size = int((await within(reader.readuntil(b"\r\n")))[:-2].split(b";", 1)[0].strip() or b"0", 16)
                    if size == 0:
                        while (await within(reader.readuntil(b"\r\n"))) != b"\r\n":  # trailers
                            pass
                        break
                    piece = await within(reader.readexactly(size + 2))
                    yield piece[:-2]
            elif "content-length" in head:
                left = int(head["content-length"])
                while left > 0:
                    piece = await within(reader.read(min(left, 65536)))
                    if not piece:
                        raise EOFError
                    left -= len(piece)
                    yield piece
            else:  # delimited by the end of the connection
                keep = False
                while piece := await within(reader.read(65536)):
                    yield piece
            done = True
        except TimeoutError:
            raise TransportTimeout("the answer did not finish in time") from None
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__} while reading the answer") from None
        finally:
            if done and keep:
                self._put(origin, conn)
            else:
                conn.close()  # abandoned mid-body: the rest of the answer would be read by the next request
            self._slots.release()

    async def _open(self, origin: Origin, request: bytes) -> tuple[_Conn, tuple[str, int, str, dict[str, str]]]:
        """Send ``request`` on an idle connection (or a new one) and read the answer's head. A reused connection
        the server closed while idle is noticed before any answer byte, and the request sent once more on a new
        one. The caller owns the returned connection; on any failure here it is closed."""
        for _ in range(2):
            conn = self._take(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin)
            try:
                conn.writer.write(request)
                await conn.writer.drain()
                return conn, await _head(conn.reader)
            except _Stale:
                conn.close()
                if reused:
                    continue  # the server had closed it while idle: once more, on a new connection
                raise TransportError("the connection closed before an answer") from None
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                conn.close()
                raise TransportError(f"{type(exc).__name__} during the exchange") from None
            except BaseException:  # timeout or cancellation mid-exchange: the connection is unusable
                conn.close()
                raise
        raise TransportError("the connection closed before an answer")

    async def _exchange(self, origin: Origin, request: bytes) -> Reply:
        conn, (version, status, reason, headers) = await self._open(origin, request)
        try:
            content, keep = await self._read_body(conn.reader, status, headers)
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            conn.close()
            raise TransportError(f"{type(exc).__name__} during the exchange") from None
        except BaseException:
            conn.close()
            raise
        if keep and _keep_alive(version, headers):
            self._put(origin, conn)
        else:
            conn.close()
        return Reply(status, headers, content, reason)

    def _take(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < self._idle_expiry and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    def _put(self, origin: Origin, conn: _Conn) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(self, origin: Origin) -> _Conn:
        scheme, host, port = origin
        tls = self._ssl if scheme == "https" else None
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=tls, server_hostname=host if tls else None,
                                                           limit=HEAD_LIMIT)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect ({type(exc).__name__})") from None
        self.connections_opened += 1
        return _Conn(reader, writer)

    async def _read_body(self, reader: asyncio.StreamReader, status: int,
                         headers: Mapping[str, str]) -> tuple[bytes, bool]:
        """The whole body (at most ``max_body``), and whether the connection can carry another request."""
        if status in (204, 304):
            return b"", True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._chunked(reader), True
        if "content-length" in headers:
            length = int(headers["content-length"])
            if length > self._max_body:
                raise ValueError("response body too large")
            return await reader.readexactly(length), True
        # delimited by the end of the connection
        content = await reader.read(self._max_body + 1)
        while not reader.at_eof() and len(content) <= self._max_body:
            content += await reader.read(self._max_body + 1 - len(content))
        if len(content) > self._max_body:
            raise ValueError("response body too large")
        return content, False

    async def _chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > self._max_body:
                raise ValueError("response body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
