"""A callback receiver cannot make a delivery hang or bloat the host (real sockets, a real receiver).

The receivers are raw TCP servers on loopback, so they can misbehave as a hostile one would: answer a
body of hundreds of MiB, or trickle their answer a byte at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from shared.settings import Settings
from shared.webhooks.delivery import MAX_ANSWER_BYTES, Deliverer, new_webhook_client
from shared.webhooks.jobs import SUCCEEDED, ScoreJob

SETTINGS = Settings.from_env({
    "TUNEFLOW_STORAGE_CONNECTION": "UseDevelopmentStorage=true", "TUNEFLOW_EMULATOR_CONNECTION": "/nowhere",
    "TUNEFLOW_WEBHOOK_SECRET": "a plain secret", "TUNEFLOW_WEBHOOK_ALLOW_HTTP": "true",
    "TUNEFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
})


class Receiver:
    """Accepts one connection at a time, reads the request head and body, then runs ``answer(conn)``."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.answer = answer
        self.sent = 0  # bytes of answer the receiver managed to hand the kernel
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                with contextlib.suppress(OSError):  # the client went away: what a bounded reader does
                    self.answer(conn)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.server.close()


def deliver(receiver: Receiver, timeout_s: float | None = None) -> tuple[tuple[bool, int | None, str | None], float]:
    job = ScoreJob.new("ep", b"{}", f"http://127.0.0.1:{receiver.port}/hook", None)
    job.status, job.result = SUCCEEDED, {"output": "hi"}

    async def run() -> tuple[bool, int | None, str | None]:
        client = new_webhook_client()
        try:
            deliverer = Deliverer(SETTINGS, lambda: client)
            return await (deliverer.deliver(job, timeout_s) if timeout_s else deliverer.deliver(job))
        finally:
            await client.aclose()

    started = time.perf_counter()
    outcome = asyncio.run(run())
    return outcome, time.perf_counter() - started


def test_a_huge_answer_is_read_only_as_far_as_a_few_kib(receivers: list[Receiver]) -> None:
    huge = 256 * 1024 * 1024

    def answer(conn: socket.socket) -> None:
        receiver.send(conn, f"HTTP/1.1 200 OK\r\nContent-Length: {huge}\r\n\r\n".encode())
        chunk = b"x" * 65536
        for _ in range(huge // len(chunk)):
            receiver.send(conn, chunk)

    receiver = Receiver(answer)
    receivers.append(receiver)
    (ok, status, problem), seconds = deliver(receiver)
    assert (ok, status, problem) == (True, 200, None)
    time.sleep(0.2)  # let the receiver notice the closed connection
    # the client stopped reading after MAX_ANSWER_BYTES: only what socket buffers hold was ever sent
    assert receiver.sent < 64 * 1024 * 1024, receiver.sent
    assert seconds < 5
    assert MAX_ANSWER_BYTES <= 8192


def test_a_trickling_receiver_cannot_stretch_the_attempt_past_its_deadline(receivers: list[Receiver]) -> None:
    def answer(conn: socket.socket) -> None:
        receiver.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):  # one byte every 0.3 s: each read is quick, the whole answer is not
            receiver.send(conn, b"x")
            time.sleep(0.3)

    receiver = Receiver(answer)
    receivers.append(receiver)
    (ok, status, problem), seconds = deliver(receiver, timeout_s=1.5)
    assert not ok and status is None and "did not answer within 1.5 s" in str(problem)
    assert 1.4 < seconds < 3.0  # a per-read timeout would have let it run 30 s


def test_a_receiver_that_never_answers_fails_at_the_deadline(receivers: list[Receiver]) -> None:
    receiver = Receiver(lambda conn: time.sleep(5))
    receivers.append(receiver)
    (ok, _, problem), seconds = deliver(receiver, timeout_s=1.0)
    assert not ok and "did not answer within 1 s" in str(problem) and seconds < 2.5


def test_a_normal_answer_is_delivered(receivers: list[Receiver]) -> None:
    receiver = Receiver(lambda conn: receiver.send(conn, b"HTTP/1.1 204 No Content\r\n\r\n"))
    receivers.append(receiver)
    (ok, status, _), _ = deliver(receiver)
    assert ok and status == 204
