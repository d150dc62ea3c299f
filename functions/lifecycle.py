"""Blueprint: Azure ML run and model events (Event Grid trigger)."""

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("lifecycle")
@bp.event_grid_trigger(arg_name="event")
def lifecycle(event: func.EventGridEvent) -> None:
    from shared.handlers import on_lifecycle_event

    on_lifecycle_event(event)
