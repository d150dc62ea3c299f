"""A streamed scoring call over the real HTTP/1.1 client and a local server: pieces as they come, and the
connection kept for the next call once the answer has been read to its end."""

from __future__ import annotations

import asyncio

from shared.scoring.client import Scorer
from shared.scoring.http1 import Http1Client
from shared.scoring.resolve import EndpointCache, EndpointInfo
from shared.scoring.stream import open_stream
from tests.support.http_server import Server, read_request

EVENTS = [b'data: {"0": "Lima"}\n\n', b'data: {"0": " is"}\n\n', b'data: {"0": " it."}\n\n', b"data: [DONE]\n\n"]


async def streaming(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while True:  # keep-alive: one streamed, chunked answer per request
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for event in EVENTS:
            writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()


class LocalResolver:
    def __init__(self, url: str) -> None:
        self.url = url

    async def resolve(self, name: str) -> EndpointInfo:
        return EndpointInfo(name, self.url, "key", {"blue": "chat-ft:1"}, {"blue": 100})


def test_streamed_answers_arrive_in_pieces_and_reuse_one_connection() -> None:
    async def go() -> tuple[list[list[str]], int, int]:
        async with Server(streaming) as server:
            client = Http1Client()
            scorer = Scorer(EndpointCache(LocalResolver(server.url), 60), lambda: client, timeout_s=5, retries=0)
            answers = []
            for _ in range(3):
                streamed = await open_stream(scorer, lambda: client, "ep", b"{}", None, timeout_s=5, retries=0)
                answers.append([piece async for piece in streamed.pieces])
            return answers, server.connections, client.connections_opened

    answers, served, opened = asyncio.run(go())
    assert answers == [["Lima", " is", " it."]] * 3
    # read to the end after [DONE], the connection went back to the pool: a TLS handshake saved per answer
    assert served == 1 and opened == 1


def test_a_stream_abandoned_midway_closes_its_connection() -> None:
    async def go() -> tuple[int, int]:
        async with Server(streaming) as server:
            client = Http1Client()
            scorer = Scorer(EndpointCache(LocalResolver(server.url), 60), lambda: client, timeout_s=5, retries=0)
            for _ in range(2):
                streamed = await open_stream(scorer, lambda: client, "ep", b"{}", None, timeout_s=5, retries=0)
                async for _piece in streamed.pieces:
                    break  # the caller stops reading (a client went away)
                await streamed.pieces.aclose()  # type: ignore[attr-defined]
            return server.connections, client.connections_opened

    served, opened = asyncio.run(go())
    assert served == 2 and opened == 2  # never reused with the rest of an answer unread in it
