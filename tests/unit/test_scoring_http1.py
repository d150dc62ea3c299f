"""The scoring hot path's HTTP/1.1 client against real local servers (raw asyncio sockets, scripted answers)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from shared.errors import TransportError, TransportTimeout
from shared.scoring.http1 import Http1Client
from tests.support.http_server import Handler, Server, read_request

T = TypeVar("T")


def keep_alive(answer: Callable[[str, dict[str, str], bytes], bytes]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            line, headers, body = await read_request(reader)
            writer.write(answer(line, headers, body))
            await writer.drain()

    return handler


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_post_with_content_length_and_keep_alive_reuse():
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def answer(line: str, headers: dict[str, str], body: bytes) -> bytes:
        seen.append((line, headers, body))
        return ok(b'[{"0": "hi"}]', "azureml-model-deployment: blue\r\n")

    async def go() -> None:
        async with Server(keep_alive(answer)) as server:
            client = Http1Client()
            for _ in range(5):
                reply = await client.post(server.url, b'{"a": 1}', {"Authorization": "Bearer k"}, 5)
                assert (reply.status, reply.content) == (200, b'[{"0": "hi"}]')
                assert reply.headers["azureml-model-deployment"] == "blue"
            assert server.connections == 1 and client.connections_opened == 1

    run(go())
    line, headers, body = seen[0]
    assert line == "POST /score?x=1 HTTP/1.1" and body == b'{"a": 1}'
    assert headers["authorization"] == "Bearer k" and headers["content-length"] == "8"
    assert headers["host"].startswith("127.0.0.1:")


def test_chunked_interim_and_close_delimited_answers():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
            await writer.drain()
            await read_request(reader)  # kept alive after a chunked answer
            writer.write(ok(b"again"))
        else:
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    async def go() -> None:
        async with Server(handler) as server:
            client = Http1Client()
            assert (await client.post(server.url, b"{}", {}, 5)).content == b"hello world"
            assert (await client.post(server.url, b"{}", {}, 5)).content == b"again"
            assert server.connections == 1
            # the server closed that connection: the next request goes on a new one, where the answer is
            # delimited by the end of the connection (HTTP/1.0, no length), so it is not kept either
            third = await client.post(server.url, b"{}", {}, 5)
            assert third.content == b"until the end" and server.connections == 2 and not any(client._idle.values())

    run(go())


def test_a_connection_the_server_closed_while_idle_is_replaced_transparently():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(ok(b"one"))  # keep-alive announced, but the server closes right after
        await writer.drain()

    async def go() -> None:
        async with Server(handler) as server:
            client = Http1Client()
            assert (await client.post(server.url, b"{}", {}, 5)).content == b"one"
            await asyncio.sleep(0.05)
            assert (await client.post(server.url, b"{}", {}, 5)).content == b"one"
            assert server.connections == 2

    run(go())


def test_connection_close_is_honoured():
    async def go() -> None:
        async with Server(keep_alive(lambda *a: ok(b"x", "Connection: close\r\n"))) as server:
            client = Http1Client()
            await client.post(server.url, b"{}", {}, 5)
            await client.post(server.url, b"{}", {}, 5)
            assert client.connections_opened == 2

    run(go())


def test_timeout_and_refused_connection():
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await asyncio.sleep(2)

    async def go() -> None:
        async with Server(slow) as server:
            with pytest.raises(TransportTimeout):
                await Http1Client().post(server.url, b"{}", {}, 0.2)
            url = server.url
        with pytest.raises(TransportError, match="cannot connect"):
            await Http1Client().post(url, b"{}", {}, 2)

    run(go())


def test_malformed_answer_is_a_transport_error():
    async def go() -> None:
        async with Server(keep_alive(lambda *a: b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")) as server:
            with pytest.raises(TransportError):
                await Http1Client().post(server.url, b"{}", {}, 2)

    run(go())


def test_concurrent_requests_share_a_bounded_pool():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.02)
            writer.write(ok(b"ok"))
            await writer.drain()

    async def go() -> None:
        async with Server(handler) as server:
            client = Http1Client(max_connections=8)
            replies = await asyncio.gather(*(client.post(server.url, b"{}", {}, 10) for _ in range(64)))
            assert all(r.content == b"ok" for r in replies)
            assert server.connections == 8
            await asyncio.gather(*(client.post(server.url, b"{}", {}, 10) for _ in range(64)))
            assert server.connections == 8  # all reused

    run(go())


def test_https_with_a_private_ca(tmp_path: Path):
    from emulator.tls import ensure_tls

    files = ensure_tls(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(files.server_cert, files.server_key)

    async def go() -> None:
        async with Server(keep_alive(lambda *a: ok(b"secure")), tls=server_tls) as server:
            trusted = Http1Client(ssl.create_default_context(cafile=str(files.ca_cert)))
            assert (await trusted.post(server.url, b"{}", {}, 5)).content == b"secure"
            with pytest.raises(TransportError):
                await Http1Client().post(server.url, b"{}", {}, 5)  # the system CAs do not know it

    run(go())
