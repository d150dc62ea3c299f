"""An HTTPS front for Azurite's blob service, for the SDK's own uploads and downloads.

azure-ai-ml builds storage URLs as ``https://<account>.blob.<storage_endpoint>/<container>/<blob>``.
With ``storage_endpoint = "emulator@127.0.0.1:<port>"`` the host part before ``@`` becomes URL user
info, so the request lands here (HTTPS, our CA) and is relayed unchanged to Azurite (plain HTTP).
Requests carry the account SAS that ``listSecrets`` returned, which Azurite checks itself; the Basic
authorization header that the user info produces is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from emulator.core import Emulator

HOP_BY_HOP = {
    "host", "authorization", "connection", "keep-alive", "transfer-encoding", "content-length",
    "proxy-authorization", "te", "trailer", "upgrade",
}


def app(emu: Emulator) -> Starlette:
    client = httpx.AsyncClient(timeout=httpx.Timeout(300.0), follow_redirects=False)
    target = emu.blobs.blob_endpoint

    async def relay(request: Request) -> Response:
        url = target + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.body()
        upstream = await client.request(request.method, url, headers=headers, content=body)
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        out_headers.pop("content-encoding", None)
        return Response(upstream.content, status_code=upstream.status_code, headers=out_headers)

    methods = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "OPTIONS"]
    application = Starlette(routes=[Route("/{path:path}", relay, methods=methods)])
    application.state.emu = emu
    return application
