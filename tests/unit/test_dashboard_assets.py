"""The dashboard's page and assets: hashed names, caching, a CSP with no inline script, no key written in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.api.http import Request
from shared.dashboard import assets

ROOT = Path(__file__).resolve().parents[2]


def get(path: str, name: str = "", **params: str) -> Request:
    return Request("GET", f"http://localhost/api/{path}", {}, params, {"name": name} if name else {}, b"")


def test_the_page_names_each_asset_by_its_content_hash_and_holds_no_key():
    page = assets.page(get("dashboard", code="secret-key"))
    html = page.body.decode()
    assert page.status == 200 and "secret-key" not in html and "{{" not in html
    for name, found in assets.assets().items():
        assert f"dashboard/assets/{name}?v={found.etag}" in html
    assert "<script>" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)  # no inline script
    assert page.headers["Cache-Control"] == "no-store"


def test_every_answer_carries_a_csp_that_forbids_inline_script_and_framing():
    for response in (assets.page(get("dashboard")), assets.asset(get("x", "app.js")), assets.asset(get("x", "nope"))):
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "frame-ancestors 'none'" in csp and response.headers["Referrer-Policy"] == "no-referrer"


def test_assets_are_cached_for_good_when_named_by_hash_and_revalidated_otherwise():
    found = assets.assets()["app.js"]
    hashed = assets.asset(get("x", "app.js", v=found.etag))
    assert hashed.status == 200 and "immutable" in hashed.headers["Cache-Control"]
    assert hashed.headers["Content-Type"].startswith("text/javascript")
    assert assets.asset(get("x", "app.js")).headers["Cache-Control"] == "no-cache"
    again = Request("GET", "http://localhost/x", {"if-none-match": f'"{found.etag}"'}, {}, {"name": "app.js"}, b"")
    assert assets.asset(again).status == 304


@pytest.mark.parametrize("name", ["../assets.py", "index.html", "..", "vendor", "app.js/", "%2e%2e", "a" * 300, ""])
def test_only_the_listed_assets_are_served(name: str):
    answer = assets.asset(get("x", name))
    assert answer.status == 404 and json.loads(answer.body)["error"]["code"] == "not_found"


def test_without_the_chart_library_the_page_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setitem(assets.ASSETS, "uPlot.iife.min.js", tmp_path / "missing.js")
    assets.assets.cache_clear()
    assets._page.cache_clear()
    try:
        answer = assets.page(get("dashboard"))
        assert answer.status == 503 and "make install" in json.loads(answer.body)["error"]["message"]
    finally:
        monkeypatch.undo()
        assets.assets.cache_clear()
        assets._page.cache_clear()


def test_the_shipped_chart_library_is_the_version_package_json_pins():
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["uplot"]
    head = (assets.VENDOR / "uPlot.iife.min.js").read_text()[:200]
    assert f"(v{pinned})" in head


def test_the_script_never_parses_markup():
    """Values become text nodes: the script has no innerHTML, outerHTML, insertAdjacentHTML or document.write."""
    script = (assets.STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
