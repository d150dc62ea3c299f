"""Blueprint: Azure ML run and model events (Event Grid trigger).

The event comes as its JSON text (see ``functions/ingest.py``): ``shared.events`` parses and checks it.
"""

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("lifecycle")
@bp.event_grid_trigger(arg_name="event")
def lifecycle(event: str) -> None:
    from shared.handlers import on_lifecycle_event

    on_lifecycle_event(event)
