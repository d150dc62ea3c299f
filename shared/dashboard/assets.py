"""The dashboard's files: the page (behind the function key) and its script, styles and chart library.

The assets are the page's code, the same for everyone and free of data, so they are served without a key
(a browser cannot add one to ``<script src>``); they are named in the page by content hash and cached for
good. Every answer carries a Content-Security-Policy that allows only this app's own scripts, styles and
API calls: no inline script, no other origin, no framing, no referrer (the page's URL holds its key).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from shared.api.http import Request, Response, error_response

STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"  # copied from node_modules by `make install` (package.json pins the library)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY"}
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8"}
ASSETS = {"app.js": STATIC / "app.js", "app.css": STATIC / "app.css",
          "uPlot.iife.min.js": VENDOR / "uPlot.iife.min.js", "uPlot.min.css": VENDOR / "uPlot.min.css"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SLOT = re.compile(r"\{\{asset:([^}]+)\}\}")


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def assets() -> dict[str, Asset]:
    """Every file the page loads that is there, read once per process (the page answers 503 without them)."""
    found = {}
    for name, path in ASSETS.items():
        if path.is_file():
            body = path.read_bytes()
            found[name] = Asset(body, TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:16])
    return found


@functools.cache
def _page() -> bytes | None:
    """index.html with each ``{{asset:NAME}}`` made ``dashboard/assets/NAME?v=HASH``; None if an asset is missing."""
    files = assets()
    if set(files) != set(ASSETS):
        return None
    html = (STATIC / "index.html").read_text()
    return _SLOT.sub(lambda m: f"dashboard/assets/{m.group(1)}?v={files[m.group(1)].etag}", html).encode()


def page(request: Request) -> Response:
    body = _page()
    if body is None:
        missing = ", ".join(n for n in ASSETS if n not in assets())
        return error_response(503, f"the dashboard is not installed: {missing} missing (`make install` copies the "
                              "chart library from node_modules)", code="dashboard_missing", headers=SECURITY)
    return Response(200, body, {"Content-Type": TYPES[".html"], "Cache-Control": "no-store", **SECURITY})


def asset(request: Request) -> Response:
    name = request.route_params.get("name", "")
    found = assets().get(name) if _NAME.fullmatch(name) else None
    if found is None:
        return error_response(404, f"no dashboard asset {name!r}", code="not_found", param="name", headers=SECURITY)
    headers = {"Content-Type": found.content_type, "ETag": f'"{found.etag}"', **SECURITY,
               "Cache-Control": "public, max-age=31536000, immutable" if request.params.get("v") == found.etag
               else "no-cache"}
    if request.header("if-none-match") == f'"{found.etag}"':
        return Response(304, b"", headers)
    return Response(200, found.body, headers)
