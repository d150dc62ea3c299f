"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against the real local stack.

A dataset full of markup (``<script>``, ``<img onerror>``, ``javascript:`` links, in its messages, a key name
and its blob name) is fine-tuned and deployed; the dashboard must show its run, loss curve, evaluation and
validation report with all of that as text, and its teardown button must need the admin key.
Screenshots go to ``TUNEFLOW_SCREENSHOTS`` when set (``make screenshots`` writes ``docs/``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from cli.demo_dataset import generate
from shared.runs import RunState
from tests.e2e.conftest import run_for, wait_for
from tests.support.browser import chromium, expect, new_page, screenshots
from tests.support.browser import dashboard_url as url_of

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MARKUP = ['<script>window.__xss = "script"</script>', '<img src=x onerror="window.__xss = \'img\'">',
          '[click me](javascript:window.__xss="md")', '<a href="javascript:window.__xss=\'a\'">a link</a>']
KEY_NAME = '<img src=x onerror="window.__xss=\'key\'">'
DATASET = 'xss<img src=x onerror=window.__xss=1>.jsonl'
DONE = {RunState.DEPLOYED, RunState.FAILED, RunState.DEPLOY_FAILED, RunState.REJECTED, RunState.GATED}


def markup_dataset(rows: int = 200, seed: int = 11) -> bytes:
    lines = []
    for i, row in enumerate(generate(rows, seed)):
        row["messages"][-2]["content"] += " " + MARKUP[i % len(MARKUP)]  # every prompt: the samples show some
        if i % 10 == 0:
            row[KEY_NAME] = "x"  # an unknown key: a warning whose detail quotes its name
        lines.append(json.dumps(row))
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def deployed(stack, runs):
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    blobs.get_blob_client("datasets", DATASET).upload_blob(markup_dataset(), overwrite=True)
    run = wait_for(run_for(runs, DATASET, DONE), 600, "the markup dataset's run to settle")
    assert run.state == RunState.DEPLOYED, f"{run.state}: {run.last_error}"
    return run


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser):
    with new_page(browser) as opened:
        yield opened


def shots(tmp_path: Path) -> Path:
    return screenshots(tmp_path)


def dashboard_url(stack, key: str | None = None) -> str:
    return url_of(stack.api, key or stack.devhost.function_key)


def no_markup_ran(page) -> None:
    assert "[object " not in page.inner_text("main")  # every value rendered, none stringified
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("document.scripts.length") == 2  # the chart library and app.js, nothing else
    assert page.locator("main img, main script, main iframe").count() == 0
    hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
    assert not [h for h in hrefs if h.lower().startswith("javascript:")], hrefs


def test_the_page_needs_the_function_key_and_forbids_inline_script(stack):
    assert httpx.get(f"{stack.api}/dashboard", timeout=30).status_code == 401
    assert httpx.get(dashboard_url(stack, "not-a-key"), timeout=30).status_code == 401
    answer = httpx.get(dashboard_url(stack), timeout=30)
    assert answer.status_code == 200 and stack.devhost.function_key not in answer.text  # no key written in
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and answer.headers["referrer-policy"] == "no-referrer"


def test_runs_page_lists_the_deployed_run_as_text(stack, deployed, page, tmp_path):
    loaded: list[int] = []
    page.on("response", lambda r: loaded.append(len(r.body())) if r.status == 200 else None)
    page.goto(dashboard_url(stack))
    row = page.locator(f'#runs tr[data-run-id="{deployed.run_id}"]')
    row.wait_for(timeout=30_000)
    assert "DEPLOYED" in row.inner_text()
    assert DATASET in row.inner_text()  # the blob's name, markup and all, as text
    assert deployed.model in row.inner_text() and "tuneflow-chat" in row.inner_text()
    page.wait_for_load_state("networkidle")
    assert sum(loaded) <= 300 * 1024, f"first load {sum(loaded)} bytes"
    # the page's own CSP refuses a script element added at run time
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__xss = 1';"
                  " document.body.append(s); }")
    assert page.evaluate("window.__xss") is None
    page.evaluate("document.querySelectorAll('body > script').forEach(s => s.remove())")
    # filter and search narrow the table; the filter lives in the URL
    page.select_option("#state-filter", "REJECTED")
    expect(page.locator("#runs tbody tr[data-run-id]")).to_have_count(0)  # (the page's CSP forbids eval: no JS waits)
    assert "state=REJECTED" in page.url
    page.select_option("#state-filter", "")
    page.fill("#search", "xss<img")
    page.press("#search", "Enter")
    expect(page.locator("#runs tbody tr[data-run-id]")).to_have_count(1)
    no_markup_ran(page)
    page.screenshot(path=str(shots(tmp_path) / "dashboard-search.png"), full_page=True)
    assert page.locator("#runs > tbody").count() == 1 and page.locator("#runs tbody tbody").count() == 0
    assert page.errors == []


def test_run_page_shows_loss_curve_evaluation_and_report_inert(stack, deployed, page, tmp_path):
    page.goto(dashboard_url(stack) + f"#/runs/{deployed.run_id}")
    chart = page.locator("#loss-chart")
    chart.wait_for(timeout=30_000)
    metrics = httpx.get(f"{stack.api}/runs/{deployed.run_id}/metrics",
                        headers={"x-functions-key": stack.devhost.function_key}, timeout=30).json()
    logged = [p["step"] for p in metrics["series"]["train_loss"]]
    assert logged and chart.get_attribute("data-steps") == ",".join(map(str, logged))
    assert chart.locator("canvas").count() >= 1  # drawn by the chart library
    assert page.locator("#timeline-chart canvas").count() >= 1
    evaluation = page.locator("#evaluation-table")
    assert "candidate" in evaluation.inner_text() and evaluation.locator('tr[data-metric="token_f1"]').count() == 1
    assert "Warnings (2 codes)" in page.locator("#validation").inner_text()
    warnings = page.locator("#warnings").inner_text()
    assert "unknown_keys" in warnings and KEY_NAME in warnings  # quoted as text
    samples = page.locator("#samples").inner_text()
    assert any(m in samples for m in MARKUP), samples[:500]
    assert page.locator("#token-chart canvas").count() >= 1
    events = page.locator("#events").inner_text()
    assert "tuneflow.run.deployed" in events
    no_markup_ran(page)
    page.screenshot(path=str(shots(tmp_path) / "dashboard-run.png"), full_page=True)
    assert page.errors == []


def test_endpoints_page_tears_down_only_with_the_admin_key(stack, deployed, page, tmp_path):
    ml = stack.emulator.ml_client()
    page.goto(dashboard_url(stack) + "#/endpoints")
    card = page.locator('.card[data-endpoint="tuneflow-chat"]')
    card.wait_for(timeout=30_000)
    row = card.locator(f'tr[data-deployment="{deployed.deployment}"]')
    assert "100%" in row.inner_text() and deployed.model in row.inner_text()
    page.screenshot(path=str(shots(tmp_path) / "dashboard-endpoints.png"), full_page=True)

    def teardown(key: str) -> str:
        page.click('button[data-endpoint="tuneflow-chat"]')
        page.fill("#teardown-key", key)
        page.click("#teardown-confirm")
        outcome = page.locator("#teardown-outcome")
        outcome.wait_for(timeout=30_000)
        said = outcome.get_attribute("data-outcome") or ""
        page.evaluate("document.getElementById('teardown-result').replaceChildren()")
        return said

    assert teardown("") == "refused"  # the page's function key alone is not enough
    assert teardown("wrong-key") == "refused"
    assert ml.online_endpoints.get("tuneflow-chat").provisioning_state == "Succeeded"
    assert teardown(stack.devhost.master_key) == "accepted"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "tuneflow-chat" not in [e.name for e in ml.online_endpoints.list()]:
            break
        time.sleep(1)
    else:
        raise AssertionError("the endpoint was not deleted after the teardown")
    assert page.errors == []


def test_a_rejected_runs_errors_show_their_lines_and_markup_as_text(stack, runs, page):
    good = [json.dumps(r) for r in generate(15, 3)]
    bad_role = json.dumps({"messages": [{"role": "<img src=x onerror=window.__xss=2>", "content": "hi"},
                                        {"role": "assistant", "content": "hello"}]})
    lines = [*good, bad_role, "not json <script>window.__xss=3</script>"]
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    blobs.get_blob_client("datasets", "broken-markup.jsonl").upload_blob(("\n".join(lines) + "\n").encode(),
                                                                         overwrite=True)
    run = wait_for(run_for(runs, "broken-markup.jsonl", {RunState.REJECTED}), 120, "the broken dataset's rejection")
    page.goto(dashboard_url(stack) + f"#/runs/{run.run_id}")
    errors = page.locator("#errors")
    errors.wait_for(timeout=30_000)
    text = errors.inner_text()
    assert "line 16" in text and "line 17" in text, text
    assert "<img src=x onerror=window.__xss=2>" in text or "<script>" in text, text
    assert "Rejected" in page.locator("#validation").inner_text()
    assert "Errors (2 codes)" in page.locator("#validation").inner_text()
    no_markup_ran(page)
    assert page.errors == []
