"""``function_app`` with the scoring path on an httpx client instead of ``shared.scoring.http1``: the scoring
bench's httpx mode (``--app bench.scoring.httpx_app:app``), so both clients are measured in one run on the
same code. Never deployed."""

from __future__ import annotations

import httpx

from function_app import app
from shared import services as process
from shared.scoring.pool import MAX_CONNECTIONS, MAX_KEEPALIVE, PerLoop
from shared.services import Services
from shared.settings import get_settings
from tests.support.fake_scoring import HttpxSender

__all__ = ["app"]


def _client(base: Services) -> HttpxSender:
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE)
    return HttpxSender(httpx.AsyncClient(verify=base.connections.tls(), limits=limits, trust_env=False))


_base = Services(get_settings())
process._Process.value = Services(get_settings(), sender=PerLoop(lambda: _client(_base)))
