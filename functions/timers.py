"""Blueprint: timers — the reconciler (converge what events left unfinished) and idle teardown."""

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("reconcile")
@bp.timer_trigger(arg_name="timer", schedule="%TUNEFLOW_RECONCILE_SCHEDULE%", run_on_startup=False)
def reconcile(timer: func.TimerRequest) -> None:
    from shared.handlers import on_reconcile_timer

    on_reconcile_timer()


@bp.function_name("idle_teardown")
@bp.timer_trigger(arg_name="timer", schedule="%TUNEFLOW_IDLE_TEARDOWN_SCHEDULE%", run_on_startup=False)
def idle_teardown(timer: func.TimerRequest) -> None:
    from shared.handlers import on_idle_timer

    on_idle_timer()  # reads the managed endpoints; deletes only those idle past their limit (tag or setting)
