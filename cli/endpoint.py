"""``python -m cli score`` and ``teardown``: calls to tuneflow's HTTP API.

The API's base URL and key come from ``--api-url``/``--key`` or the CLI's environment variables
``TUNEFLOW_API_URL``/``TUNEFLOW_API_KEY`` (not app settings: the app never reads them). The key goes
in ``x-functions-key``, the header the Functions host checks. Errors come back in the API's one JSON
shape (``{"error": {"message", "code", ...}}``) and are printed as one line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cli.main import EXIT_INVALID, EXIT_OK, EXIT_USAGE, fail
from shared.errors import ApiFailure, ApiUnreachable
from shared.integers import argument

if TYPE_CHECKING:
    import httpx

URL_ENV, KEY_ENV = "TUNEFLOW_API_URL", "TUNEFLOW_API_KEY"
SCORE_TIMEOUT_S = 240.0  # the app's own budget is at most 225 s (the Functions HTTP limit is 230 s)
_transport: httpx.BaseTransport | None = None  # tests put an httpx.MockTransport here
_sleep = time.sleep  # teardown --wait's pause (tests replace it)

_API_HELP = f"""\
The API: --api-url (or {URL_ENV}), e.g. http://localhost:7071/api or https://<app>.azurewebsites.net/api
(a URL without a path gets /api); the key: --key (or {KEY_ENV}), sent as x-functions-key.

Exit codes: 0 done, 1 the API answered with an error (its message is printed), 2 usage error or the
API could not be reached."""

_SCORE_EPILOG = f"""\
Sends {{"messages": [system?, user], "parameters": {{...}}}} to POST /api/score and prints the model's
answer; which model and deployment answered goes to stderr. TEXT "-" reads the prompt from stdin.
Needs a function key (or the master key).

{_API_HELP}

Examples:
  python -m cli score "What is the capital of Peru?"
  python -m cli score "Capital of Chile?" --system "Answer in one sentence." --max-new-tokens 32
  echo "Capital of Peru?" | python -m cli score - --deployment v1a2b-3f2a9c --json
"""

_TEARDOWN_EPILOG = f"""\
DELETE /api/endpoints/NAME (or /api/endpoints/NAME/deployments/D): deletes the endpoint with its
deployments, or one deployment after moving its traffic to the others, and marks the runs on it
TORN_DOWN. Deleting what is already gone is not an error. Needs the admin (master) key, or the
app's teardown key when TUNEFLOW_TEARDOWN_KEY is set. Asks for confirmation unless --yes (required
when stdin is not a terminal).

{_API_HELP}

Examples:
  python -m cli teardown tuneflow-chat --yes
  python -m cli teardown tuneflow-chat --deployment v1a2b-3f2a9c --wait
"""


def register(subparsers: Any) -> None:
    """Add the ``score`` and ``teardown`` commands."""
    score = subparsers.add_parser(
        "score",
        help="ask the deployed model a question (POST /api/score)",
        description="Score a prompt on the fine-tuned model's endpoint through tuneflow's API and print\n"
        "the answer.",
        epilog=_SCORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument("text", metavar="TEXT", help='the user message ("-": read it from stdin)')
    score.add_argument("--system", metavar="TEXT", help="a system message before it")
    score.add_argument("--deployment", metavar="D",
                       help="score on this deployment (default: the endpoint's traffic split)")
    score.add_argument("--max-new-tokens", type=_positive_int, metavar="N", help="most tokens to generate")
    score.add_argument("--temperature", type=_non_negative, metavar="T", help="sampling temperature (0: greedy)")
    score.add_argument("--top-p", type=_non_negative, metavar="P", help="nucleus sampling threshold")
    score.add_argument("--json", action="store_true", help="print the API's whole JSON answer")
    score.add_argument("--timeout", type=_non_negative, default=SCORE_TIMEOUT_S, metavar="S",
                       help=f"give up after S seconds (default {SCORE_TIMEOUT_S:g})")
    _api_options(score)
    score.set_defaults(handler=_score)

    teardown = subparsers.add_parser(
        "teardown",
        help="delete an endpoint (or one deployment) and stop paying for it",
        description="Delete an online endpoint with its deployments, or one deployment, through tuneflow's API.",
        epilog=_TEARDOWN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    teardown.add_argument("name", metavar="NAME", help="the endpoint (TUNEFLOW_ENDPOINT, tuneflow-chat by default)")
    teardown.add_argument("--deployment", metavar="D", help="delete only this deployment")
    teardown.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    teardown.add_argument("--wait", action="store_true", help="poll the status until it is deleted")
    teardown.add_argument("--wait-timeout", type=_non_negative, default=1800.0, metavar="S",
                          help="--wait gives up after S seconds (default 1800)")
    teardown.add_argument("--interval", type=_non_negative, default=10.0, metavar="S",
                          help="--wait polls every S seconds (default 10)")
    teardown.add_argument("--timeout", type=_non_negative, default=120.0, metavar="S",
                          help="timeout of each HTTP call (default 120)")
    _api_options(teardown)
    teardown.set_defaults(handler=_teardown)


def _api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-url", metavar="URL", help=f"tuneflow's API base URL (default: ${URL_ENV})")
    parser.add_argument("--key", metavar="KEY", help=f"function or admin key (default: ${KEY_ENV})")


_positive_int = argument(lo=1)


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


# -- the API client ------------------------------------------------------------------------------------




@dataclass(frozen=True)
class Api:
    base_url: str
    key: str | None
    timeout: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Api:
        url = (args.api_url or os.environ.get(URL_ENV) or "").strip()
        if not url:
            raise ValueError(f"no API URL: pass --api-url or set {URL_ENV} (e.g. http://localhost:7071/api)")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the API URL must start with http:// or https:// (got {url!r})")
        base = url.rstrip("/")
        if base.count("/") == 2:  # scheme://host[:port] only: the Functions host's default prefix
            base += "/api"
        key = (args.key or os.environ.get(KEY_ENV) or "").strip() or None
        return cls(base, key, args.timeout)

    def call(self, method: str, path: str, body: Any = None, *, absolute: bool = False) -> Any:
        """One request; the decoded JSON answer. ``ApiFailure`` on an error status, ``ApiUnreachable``."""
        import httpx

        url = str(httpx.URL(self.base_url).join(path)) if absolute else self.base_url + path
        headers = {"accept": "application/json"}
        if self.key:
            headers["x-functions-key"] = self.key
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                              transport=_transport) as client:
                response = client.request(method, url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise ApiUnreachable(f"no answer from {url} within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach the tuneflow API at {url}: {exc or type(exc).__name__}") from None
        if response.is_success:
            try:
                return response.json() if response.content else {}
            except ValueError:
                raise ApiFailure(f"{method} {url}: {response.status_code} with a body that is not JSON") from None
        raise ApiFailure(describe_error(response, self.key is not None))


def describe_error(response: httpx.Response, key_given: bool) -> str:
    """One line: status, the API's code and message, and a hint where one helps."""
    status = response.status_code
    message, code = None, None
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            message, code = error.get("message"), error.get("code")
        elif isinstance(error, str):
            message = error
    except (ValueError, AttributeError):
        pass
    if message is None:
        text = response.text.strip()
        message = text[:200] if text else response.reason_phrase
    line = f"{status} {code}: {message}" if code else f"{status}: {message}"
    if status == 401:
        line += (f" — check the key (--key or {KEY_ENV})" if key_given
                 else f" — no key was sent: pass --key or set {KEY_ENV}")
    elif status in (429, 503) and response.headers.get("retry-after"):
        line += f" (retry after {response.headers['retry-after']} s)"
    return line


def _run(action: Callable[[Api], int], args: argparse.Namespace) -> int:
    try:
        api = Api.from_args(args)
    except ValueError as exc:
        return fail(str(exc))
    try:
        return action(api)
    except ApiUnreachable as exc:
        return fail(str(exc))
    except ApiFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID


# -- score ---------------------------------------------------------------------------------------------


def score_body(args: argparse.Namespace, text: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    parameters: dict[str, Any] = {}
    if args.max_new_tokens is not None:
        parameters["max_new_tokens"] = args.max_new_tokens
    if args.temperature is not None:
        parameters["temperature"] = args.temperature
        parameters["do_sample"] = args.temperature > 0
    if args.top_p is not None:
        parameters["top_p"] = args.top_p
    body: dict[str, Any] = {"messages": messages}
    if parameters:
        body["parameters"] = parameters
    if args.deployment:
        body["deployment"] = args.deployment
    return body


def _score(args: argparse.Namespace) -> int:
    import json

    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        return fail("nothing to score: TEXT is empty")
    body = score_body(args, text.strip() if args.text == "-" else text)

    def action(api: Api) -> int:
        answer = api.call("POST", "/score", body)
        if args.json:
            print(json.dumps(answer, indent=2, ensure_ascii=False))
            return EXIT_OK
        output = answer.get("output") if isinstance(answer, dict) else None
        print(output if isinstance(output, str) else json.dumps(output, ensure_ascii=False))
        if isinstance(answer, dict) and (answer.get("model") or answer.get("deployment")):
            print(f"(model {answer.get('model') or '?'}, deployment {answer.get('deployment') or '?'})",
                  file=sys.stderr)
        return EXIT_OK

    return _run(action, args)


# -- teardown ------------------------------------------------------------------------------------------


def _confirm(what: str) -> bool:
    if not sys.stdin.isatty():
        print("error: not a terminal, so nobody can confirm: pass --yes to delete", file=sys.stderr)
        return False
    try:
        answer = input(f"Delete {what}? This cannot be undone. [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _teardown(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    what = f"deployment {args.deployment} of endpoint {args.name}" if args.deployment else \
        f"endpoint {args.name} and all its deployments"
    path = f"/endpoints/{quote(args.name, safe='')}"
    if args.deployment:
        path += f"/deployments/{quote(args.deployment, safe='')}"

    def action(api: Api) -> int:
        if not args.yes and not _confirm(what):
            print(f"{what}: not deleted", file=sys.stderr)
            return EXIT_USAGE
        answer = api.call("DELETE", path)
        state = answer.get("state", "?")
        torn = answer.get("runs_torn_down") or []
        print(f"{what}: {state}" + (f"; runs torn down: {', '.join(torn)}" if torn else ""))
        status_url = answer.get("status_url") or f"{api.base_url}{path}/status"
        if not args.wait or state == "Deleted":
            if state != "Deleted":
                print(f"follow it with: GET {status_url} (or --wait)")
            return EXIT_OK
        return _wait_deleted(api, status_url, args.wait_timeout, args.interval)

    return _run(action, args)


def _wait_deleted(api: Api, status_url: str, budget: float, interval: float) -> int:
    deadline = time.monotonic() + budget
    last = None
    while True:
        status = api.call("GET", status_url, absolute=True)  # the API answers with a path from the host's root
        state = status.get("state")
        if state != last:
            print(f"  {state}", flush=True)
            last = state
        if state == "Deleted" or status.get("exists") is False:
            return EXIT_OK
        if time.monotonic() >= deadline:
            print(f"error: still {state} after {budget:g} s; it goes on in Azure — check {status_url}",
                  file=sys.stderr)
            return EXIT_INVALID
        _sleep(interval)
