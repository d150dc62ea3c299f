"""The control plane's long-running-operation waits honour Azure's Retry-After and the caller's budget."""

from __future__ import annotations

import httpx
import pytest

from shared.endpoints.control import ControlPlane, Operation
from tests.support.fake_endpoints import control_plane


def polled(statuses: list[tuple[str, str | None]]) -> tuple[list[float], ControlPlane]:
    """A fake operation answering ``statuses`` in turn (status, Retry-After); the poll times are recorded."""
    times: list[float] = []
    answers = iter(statuses)

    def fake(request: httpx.Request) -> httpx.Response:
        times.append(plane._clock())  # the fake clock only waiting moves
        status, retry_after = next(answers)
        headers = {"Retry-After": retry_after} if retry_after else {}
        return httpx.Response(200, json={"status": status}, headers=headers)

    plane = control_plane(fake)
    return times, plane


def test_each_pause_is_the_services_retry_after() -> None:
    times, plane = polled([("InProgress", "10"), ("InProgress", "30"), ("Succeeded", None)])
    assert plane.wait(Operation("https://arm/op", retry_after_s=10), timeout=120)
    assert times == [0.0, 10.0, 40.0]  # 10 s, then the 30 s the second answer asked for


def test_a_retry_after_beyond_the_budget_stops_waiting_instead_of_polling_early() -> None:
    times, plane = polled([("InProgress", "600"), ("Succeeded", None)])
    assert plane.wait(Operation("https://arm/op"), timeout=60) is False
    assert times == [0.0]  # never polled sooner than Azure asked; the reconciler finishes it later


@pytest.mark.parametrize("header", ["1e3", "-5", "soon", ""])
def test_a_malformed_retry_after_keeps_the_previous_pause(header: str) -> None:
    times, plane = polled([("InProgress", header), ("Failed", None)])
    assert plane.wait(Operation("https://arm/op", retry_after_s=3), timeout=60) is False
    assert times == [0.0, 3.0]
