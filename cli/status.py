"""``python -m cli status``: the runs, or one run's timeline, read from the run records.

Reads ``runs/<id>.json`` in the output container straight from storage (the same records the app
writes), so it works wherever the storage settings do — no HTTP API or function key needed.
``--watch`` re-reads every few seconds: on a terminal it redraws in place, otherwise it prints a
new rendering only when something changed (so a log stays readable).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from cli.main import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, fail
from shared.errors import RunNotFound
from shared.integers import argument

if TYPE_CHECKING:
    from shared.runs import Run, RunState, RunStore
    from shared.settings import Settings

def _settled() -> frozenset[RunState]:
    """The states a run stops in (the one definition, in shared.runs; imported late: --help stays fast)."""
    from shared.runs import SETTLED

    return SETTLED


UNSUCCESSFUL = frozenset({"REJECTED", "FAILED", "DEPLOY_FAILED", "GATED", "ROLLED_BACK", "CANCELED"})
_CLEAR = "\x1b[H\x1b[2J"
_sleep = time.sleep  # --watch's pause (tests replace it)

_EPILOG = """\
Without RUN: a table of runs, newest first (id, state, dataset, model, endpoint, last update).
With RUN (an id, or a unique prefix of one): its details and timeline, each state with the time
it was entered and the time spent in it. Runs are read from the output container
(TUNEFLOW_OUTPUT_CONTAINER) with the storage settings (TUNEFLOW_STORAGE_CONNECTION, or
TUNEFLOW_STORAGE_ACCOUNT_URL with your Azure login).

--watch follows live until the run reaches a terminal state (REJECTED, FAILED, DEPLOYED,
DEPLOY_FAILED, GATED, ROLLED_BACK, RETIRED, TORN_DOWN, CANCELED), or until Ctrl-C (without RUN: until Ctrl-C).

Exit codes: 0 shown (--watch: ended DEPLOYED, RETIRED or TORN_DOWN), 1 no such run (--watch: ended
REJECTED, FAILED, DEPLOY_FAILED, GATED, ROLLED_BACK or CANCELED), 2 usage or storage error, 130 interrupted.

Examples:
  python -m cli status
  python -m cli status --state DEPLOYED,FAILED --limit 5
  python -m cli status 3f2a9c --watch
  python -m cli status 3f2a9c --json
"""


def register(subparsers: Any) -> None:
    """Add the ``status`` command."""
    parser = subparsers.add_parser(
        "status",
        help="show the runs, or one run's timeline (--watch follows it live)",
        description="Show tuneflow's runs as a table, or one run's details and timeline, from the run records.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", nargs="?", metavar="RUN", help="a run id or a unique prefix of one")
    parser.add_argument("--watch", action="store_true", help="re-render until a terminal state or Ctrl-C")
    parser.add_argument("--interval", type=_seconds, default=5.0, metavar="S",
                        help="--watch refresh, in seconds (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead (the run record, or a list of them)")
    parser.add_argument("--state", type=_states, metavar="S1,S2", help="only runs in these states (table only)")
    parser.add_argument("--limit", type=_positive, default=50, metavar="N",
                        help="at most N runs in the table (default 50)")
    parser.set_defaults(handler=_status)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


_positive = argument(lo=1)


def _states(text: str) -> frozenset[str]:
    from shared.runs import RunState

    known = {s.value for s in RunState}
    wanted = {part.strip().upper() for part in text.split(",") if part.strip()}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        named = ", ".join(unknown) if unknown else repr(text)
        raise argparse.ArgumentTypeError(f"unknown state {named}; states are " + ", ".join(s.value for s in RunState))
    return frozenset(wanted)


# -- reading -------------------------------------------------------------------------------------------



def run_store(settings: Settings) -> RunStore:
    """Runs over the output container, read-only in spirit: nothing is created if it is missing."""
    from shared.connections import Connections
    from shared.records import BlobRecordStore
    from shared.runs import RunStore

    service = Connections(settings).blob_service()
    return RunStore(BlobRecordStore(service.get_container_client(settings.output_container)))


def list_runs(store: RunStore, states: frozenset[str] | None = None, limit: int | None = None) -> list[Run]:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return list(store.list(states, limit))
    except ResourceNotFoundError:  # no output container yet: no run has ever been recorded
        return []


def find_run(store: RunStore, ref: str) -> Run:
    """The run with this id, or the only one whose id starts with ``ref``."""
    from shared.errors import InputError

    try:
        run = store.get(ref)
    except InputError:
        raise RunNotFound(f"not a run id: {ref!r}") from None
    if run is not None:
        return run
    matches = [r for r in list_runs(store) if r.run_id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunNotFound(f"{ref!r} matches {len(matches)} runs ({', '.join(r.run_id for r in matches[:5])}"
                        f"{', …' if len(matches) > 5 else ''}); give more of the id")
    raise RunNotFound(f"no run {ref!r} (python -m cli status lists them)")


# -- rendering -------------------------------------------------------------------------------------------


def _parse_time(at: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clock(at: str) -> str:
    parsed = _parse_time(at)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if parsed else at


def duration(seconds: float) -> str:
    """``75`` → ``1m 15s``; two units at most."""
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def render_runs(runs: Sequence[Run], now: datetime) -> str:
    if not runs:
        return "no runs yet — upload a dataset: python -m cli upload data/train.jsonl"
    rows = [("RUN", "STATE", "DATASET", "MODEL", "ENDPOINT", "UPDATED")]
    for run in runs:
        updated = _parse_time(run.updated_at)
        age = f" ({duration((now - updated).total_seconds())} ago)" if updated else ""
        endpoint = f"{run.endpoint}/{run.deployment}" if run.endpoint and run.deployment else run.endpoint or "-"
        rows.append((run.run_id, run.state.value, run.dataset, run.model or "-", endpoint,
                     _clock(run.updated_at) + age))
    return _table(rows)


def training_line(progress: dict[str, Any] | None) -> str | None:
    """``step 12/40 (30%), epoch 0.60, train loss 1.234, eval loss 1.300, ETA 42s`` from a run's progress."""
    if not progress or progress.get("step") is None:
        return None
    total = progress.get("total_steps")
    parts = [f"step {progress['step']}/{total} ({progress['step'] / total:.0%})" if total else
             f"step {progress['step']}"]
    if progress.get("epoch") is not None:
        parts.append(f"epoch {progress['epoch']:.2f}")
    for key, label in (("train_loss", "train loss"), ("eval_loss", "eval loss")):
        if progress.get(key) is not None:
            parts.append(f"{label} {progress[key]:.3f}")
    if progress.get("eta_s") is not None:
        parts.append(f"ETA {duration(float(progress['eta_s']))}")
    return ", ".join(parts)


def evaluation_line(evaluation: dict[str, Any] | None) -> str | None:
    verdict = (evaluation or {}).get("verdict")
    if not verdict:
        return None
    return f"{'promoted' if verdict.get('promote') else 'not promoted'}: {verdict.get('reason')}"


def rollout_line(rollout: dict[str, Any] | None) -> str | None:
    if not rollout:
        return None
    if rollout.get("reason"):
        return f"rolled back at {rollout.get('share')}%: {rollout['reason']}"
    return f"canary at {rollout.get('share')}% since {_clock(str(rollout.get('since') or ''))}"


def render_run(run: Run, now: datetime) -> str:
    lines = [f"run {run.run_id}: {run.state.value}"]
    sources = f" ({', '.join(run.sources)})" if run.sources and run.sources != [run.dataset] else ""
    details = [
        ("dataset", run.dataset + sources),
        ("base model", run.base_model),
        ("report", run.report_path), ("summary", run.summary), ("job", run.job_name), ("studio", run.studio_url),
        ("model", run.model), ("endpoint", run.endpoint), ("deployment", run.deployment),
        ("training", training_line(run.progress) if run.state.value in ("SUBMITTED", "RUNNING") else None),
        ("evaluation", evaluation_line(run.evaluation)), ("rollout", rollout_line(run.rollout)),
        ("error", run.last_error), ("created", _clock(run.created_at)), ("updated", _clock(run.updated_at)),
    ]
    width = max(len(label) for label, _ in details)
    lines += [f"  {label.ljust(width)}  {value}" for label, value in details if value]
    lines.append("")
    rows = [("STATE", "AT", "SPENT", "NOTE")]
    for i, step in enumerate(run.history):
        start = _parse_time(step.at)
        if i + 1 < len(run.history):
            end = _parse_time(run.history[i + 1].at)
            spent = duration((end - start).total_seconds()) if start and end else "?"
        elif step.state in _settled():
            spent = "-"
        else:
            spent = f"{duration((now - start).total_seconds())} so far" if start else "?"
        rows.append((step.state.value, _clock(step.at), spent, step.note or ""))
    lines.append(_table(rows))
    return "\n".join(lines)


# -- the command ------------------------------------------------------------------------------------------


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, ensure_ascii=False)


def watch(
    render: Callable[[], tuple[str, str | None]],
    interval: float,
    out: IO[str],
    sleep: Callable[[float], None] | None = None,
) -> str | None:
    """Re-render until ``render`` reports a terminal state (returned), or forever.

    ``render`` returns (text, terminal state or None). On a terminal the screen is redrawn each
    time; otherwise a rendering is printed only when it differs from the previous one.
    """
    tty = out.isatty()
    previous: str | None = None
    while True:
        text, final = render()
        if tty:
            out.write(_CLEAR + text + "\n")
        elif text != previous:
            out.write(("\n" if previous is not None else "") + text + "\n")
        out.flush()
        previous = text
        if final is not None:
            return final
        (sleep or _sleep)(interval)


def _status(args: argparse.Namespace) -> int:
    from shared.errors import SettingsError
    from shared.settings import Settings

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return fail(str(exc))
    store = run_store(settings)
    try:
        if args.run is None:
            return _show_runs(store, args)
        return _show_run(store, args)
    except RunNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # storage unreachable, denied, ...: one line, no traceback
        message = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0]
        return fail(f"cannot read the runs from container {settings.output_container!r}: {message}")


def _show_runs(store: RunStore, args: argparse.Namespace) -> int:
    def render() -> tuple[str, str | None]:
        runs = list_runs(store, args.state, args.limit)
        if args.json:
            return _json([r.summary_dict() for r in runs]), None
        return render_runs(runs, datetime.now(UTC)), None

    if not args.watch:
        print(render()[0])
        return EXIT_OK
    watch(render, args.interval, sys.stdout)
    return EXIT_OK  # not reached: only Ctrl-C ends it


def _show_run(store: RunStore, args: argparse.Namespace) -> int:
    def render() -> tuple[str, str | None]:
        run = find_run(store, args.run)
        text = _json(run.summary_dict()) if args.json else render_run(run, datetime.now(UTC))
        from shared.runs import finished

        final = run.state.value if finished(run) else None
        return text, final

    if not args.watch:
        print(render()[0])
        return EXIT_OK
    final = watch(render, args.interval, sys.stdout)
    return EXIT_INVALID if final in UNSUCCESSFUL else EXIT_OK
