"""A canary rollout: a promoted candidate takes the traffic in steps, judged on live traffic at each one.

At each step of ``rollout_steps`` (e.g. 10, 50, 100) the endpoint's split is set to candidate ``p``% /
serving ``100 - p``% in one update, and the candidate bakes for ``rollout_bake_minutes``. While it bakes,
its live calls through tuneflow's scoring proxy (``shared.endpoints.live``) are compared with the serving
deployment's over the same window: an error rate above ``rollout_max_error_rate``, or a p95 latency above
``rollout_max_p95_ratio`` × the serving one's (each judged once ``rollout_min_requests`` calls are in),
rolls it back — the serving deployment takes 100% again in one update, the candidate is deleted, and the
run ends ROLLED_BACK with the evidence. A step that bakes clean moves to the next; reaching 100% is the
switch, after which the deployment finishes as an immediate one does.

Nothing waits: each call does what is due and asks the work queue to look again (a delayed message)
when the next check is; the position is on the run record (``run.rollout``), so a crash resumes it, and
the reconciler's passes move it on too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.endpoints.control import mirror_of, traffic_of
from shared.endpoints.live import Window
from shared.runs import Run, RunState, now_iso

if TYPE_CHECKING:
    from shared.services import Services
    from shared.settings import Settings

log = logging.getLogger(__name__)
CANARY, MIRROR = "canary", "mirror"
DEPLOY = "deploy"  # the work queue's message kind that moves a deploying run on
MIN_CHECK_S, MAX_CHECK_S = 5.0, 30.0  # how often a baking canary is looked at: a quarter of its bake, within these


def _now() -> datetime:
    return datetime.now(UTC)


def check_every(s: Settings) -> float:
    return max(MIN_CHECK_S, min(MAX_CHECK_S, s.rollout_bake_minutes * 60 / 4))


def health_problem(s: Settings, mine: Window, theirs: Window) -> str | None:
    """Why the candidate's live traffic is worse than the serving deployment's, or None."""
    enough = s.rollout_min_requests
    if mine.requests >= enough and mine.error_rate > s.rollout_max_error_rate:
        return (f"the candidate failed {mine.errors} of its {mine.requests} live calls ({mine.error_rate:.1%}; "
                f"rollout.max_error_rate {s.rollout_max_error_rate:.1%}; the serving deployment "
                f"{theirs.errors} of {theirs.requests})")
    if (mine.requests >= enough and theirs.requests >= enough and mine.p95_ms and theirs.p95_ms
            and mine.p95_ms > theirs.p95_ms * s.rollout_max_p95_ratio):
        return (f"the candidate's live p95 latency {mine.p95_ms:g} ms is more than {s.rollout_max_p95_ratio:g}x "
                f"the serving deployment's {theirs.p95_ms:g} ms (rollout.max_p95_ratio)")
    return None


def split(candidate: str, serving: str, share: int) -> dict[str, int]:
    """The endpoint's traffic with the candidate at ``share``% (a deployment left out takes none)."""
    return {name: weight for name, weight in ((serving, 100 - share), (candidate, share)) if weight}


def canary(ctx: Services, run: Run, endpoint: Mapping[str, Any], serving: str, s: Settings) -> tuple[bool, Run]:
    """One look at a canary; (True, run) when it reached 100% (the caller finishes the deployment)."""
    candidate, name = str(run.deployment), str(run.endpoint)
    position = dict(run.rollout or {"strategy": CANARY, "serving": serving, "step": 0, "steps": [], "history": []})
    serving = str(position["serving"])
    steps = list(s.rollout_steps)
    share = steps[min(position["step"], len(steps) - 1)]
    if traffic_of(endpoint).get(candidate, 0) != share or not position.get("since"):
        operation = ctx.control.set_traffic(endpoint, split(candidate, serving, share))
        log.info("run %s: canary step %d: %s takes %d%% of %s", run.run_id, position["step"] + 1, candidate, share,
                 name)
        position.update(since=now_iso(), share=share, next_check=None)
        run = _save(ctx, run, position)
        ctx.control.wait(operation, 30.0)
        if share == 100:
            return True, run
        return False, _look_again(ctx, run, check_every(s))
    since = datetime.fromisoformat(position["since"])
    mine = ctx.live.window(name, candidate, since)
    theirs = ctx.live.window(name, serving, since)
    problem = health_problem(s, mine, theirs)
    evidence = {"step": position["step"] + 1, "share": share, "since": position["since"], "until": now_iso(),
                "candidate": mine.to_dict(), "serving": theirs.to_dict()}
    if problem:
        return False, roll_back(ctx, run, endpoint, position, evidence=evidence, problem=problem)
    baked = _now() - since >= timedelta(minutes=s.rollout_bake_minutes)
    if not baked:
        remaining = (since + timedelta(minutes=s.rollout_bake_minutes) - _now()).total_seconds()
        return False, _look_again(ctx, run, min(check_every(s), max(1.0, remaining)))
    position["history"] = [*position["history"], {**evidence, "outcome": "baked"}]
    position.update(step=position["step"] + 1, since=None, next_check=None)
    log.info("run %s: canary step %d baked clean (%d live calls, %d errors)", run.run_id, evidence["step"],
             mine.requests, mine.errors)
    return True, _save(ctx, run, position)  # the next step is set at once


def mirror(ctx: Services, run: Run, endpoint: Mapping[str, Any], serving: str, s: Settings) -> tuple[bool, Run]:
    """One look at a mirror rollout: the candidate gets a copy of ``rollout_mirror_percent``% of the live
    calls (Azure ML drops its answers) for the bake, judged on Azure Monitor's metrics of both deployments;
    then the switch, mirror cleared, in one update. (True, run) once the candidate takes 100%."""
    from shared.endpoints import monitor

    candidate, name = str(run.deployment), str(run.endpoint)
    position = dict(run.rollout or {"strategy": MIRROR, "serving": serving, "history": []})
    serving = str(position["serving"])
    if position.get("switched_at"):  # baked already: the switch (and the mirror's end) is what is left
        done = ctx.control.wait(ctx.control.set_traffic(endpoint, {candidate: 100}, mirror={}), 30.0)
        return done, run if done else _look_again(ctx, run, check_every(s))
    share = s.rollout_mirror_percent
    mirrored = mirror_of(endpoint).get(candidate, 0)
    if not position.get("since") or mirrored != share:
        operation = ctx.control.set_traffic(endpoint, {serving: 100}, mirror={candidate: share})
        log.info("run %s: mirroring %d%% of %s's live calls to %s", run.run_id, share, name, candidate)
        position.update(since=now_iso(), share=share, next_check=None)
        run = _save(ctx, run, position)
        ctx.control.wait(operation, 30.0)
        return False, _look_again(ctx, run, check_every(s))
    since = datetime.fromisoformat(position["since"])
    mine = monitor.window(ctx.control, name, candidate, since)
    theirs = monitor.window(ctx.control, name, serving, since)
    problem = health_problem(s, mine, theirs)
    evidence = {"mirror": share, "since": position["since"], "until": now_iso(), "candidate": mine.to_dict(),
                "serving": theirs.to_dict(), "source": "Azure Monitor"}
    if problem:
        return False, roll_back(ctx, run, endpoint, position, evidence=evidence, problem=problem, mirror={})
    if _now() - since < timedelta(minutes=s.rollout_bake_minutes):
        remaining = (since + timedelta(minutes=s.rollout_bake_minutes) - _now()).total_seconds()
        return False, _look_again(ctx, run, min(check_every(s), max(1.0, remaining)))
    position["history"] = [*position["history"], {**evidence, "outcome": "baked"}]
    position.update(switched_at=now_iso(), next_check=None)
    run = _save(ctx, run, position)
    log.info("run %s: the mirror baked clean (%d mirrored calls, %d errors): switching", run.run_id,
             mine.requests, mine.errors)
    done = ctx.control.wait(ctx.control.set_traffic(endpoint, {candidate: 100}, mirror={}), 30.0)
    return done, run if done else _look_again(ctx, run, check_every(s))


def roll_back(ctx: Services, run: Run, endpoint: Mapping[str, Any], position: dict[str, Any], *,
              evidence: dict[str, Any], problem: str, mirror: dict[str, int] | None = None) -> Run:
    """The serving deployment takes everything again in one update (a mirror, cleared); the candidate goes."""
    candidate, serving = str(run.deployment), str(position["serving"])
    log.warning("run %s: %s rolled back: %s", run.run_id, position.get("strategy", CANARY), problem)
    ctx.control.wait(ctx.control.set_traffic(endpoint, split(candidate, serving, 0), mirror=mirror), 30.0)
    try:
        ctx.control.delete_deployment(str(run.endpoint), candidate)
    except Exception as exc:  # it takes no traffic now; teardown or a later pass deletes it
        log.warning("run %s: could not delete %s: %s", run.run_id, candidate, exc)
    position["history"] = [*position["history"], {**evidence, "outcome": "rolled back", "reason": problem}]
    position.update(rolled_back_at=now_iso(), reason=problem)
    return ctx.runs.advance(run.run_id, RunState.ROLLED_BACK,
                            note=f"{position.get('strategy', CANARY)} rolled back: {problem}",
                            rollout=position, last_error=problem)


def _save(ctx: Services, run: Run, position: dict[str, Any]) -> Run:
    def change(r: Run) -> bool:
        r.rollout = position
        return True

    return ctx.runs.update(run.run_id, change)


def _look_again(ctx: Services, run: Run, delay_s: float) -> Run:
    """Ask the work queue to look at the canary after ``delay_s``, unless a look is already due by then
    (the reconciler's passes and duplicate messages must not multiply the checks)."""
    due = _now() + timedelta(seconds=delay_s)

    def change(r: Run) -> bool:
        pending = (r.rollout or {}).get("next_check")
        if pending and datetime.fromisoformat(pending) > _now():
            return False
        r.rollout = {**(r.rollout or {}), "next_check": due.isoformat(timespec="milliseconds")}
        return True

    after = ctx.runs.update(run.run_id, change)
    if (after.rollout or {}).get("next_check") == due.isoformat(timespec="milliseconds"):
        ctx.work.send_json({"kind": DEPLOY, "run_id": run.run_id}, delay_s=delay_s)
    return after
