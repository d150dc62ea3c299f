"""Blueprint: Azure ML run/model events (Event Grid trigger) and the reconciler (timer)."""

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("lifecycle")
@bp.event_grid_trigger(arg_name="event")
def lifecycle(event: func.EventGridEvent) -> None:
    from shared.handlers import on_lifecycle_event

    on_lifecycle_event(event)


@bp.function_name("reconcile")
@bp.timer_trigger(arg_name="timer", schedule="%TUNEFLOW_RECONCILE_SCHEDULE%", run_on_startup=False)
def reconcile(timer: func.TimerRequest) -> None:
    from shared.handlers import on_reconcile_timer

    on_reconcile_timer()
