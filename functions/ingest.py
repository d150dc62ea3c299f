"""Blueprint: BlobCreated events from the drop container (Event Grid trigger).

An Event Grid trigger rather than a blob trigger: it sees ``data.api`` (so only creating calls are
acted on) and lets the library stream the blob instead of receiving it whole. The event comes as its
JSON text, parsed by ``shared.events``: a malformed one (a subject that is a number, an eventTime that is
not a time) is then acknowledged with a warning, where the worker's ``EventGridEvent`` converter would
raise before tuneflow ran and Event Grid would retry the poison event for a day.
"""

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("ingest")
@bp.event_grid_trigger(arg_name="event")
def ingest(event: str) -> None:
    from shared.handlers import on_blob_created

    on_blob_created(event)
