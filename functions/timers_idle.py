"""Blueprint: idle teardown (timer) — delete endpoints that have served nothing for a while."""

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("idle_teardown")
@bp.timer_trigger(arg_name="timer", schedule="%TUNEFLOW_IDLE_TEARDOWN_SCHEDULE%", run_on_startup=False)
async def idle_teardown(timer: func.TimerRequest) -> None:
    from shared.api.triggers import on_idle_timer

    await on_idle_timer()  # off (returns at once) while TUNEFLOW_IDLE_TEARDOWN_MINUTES is 0
