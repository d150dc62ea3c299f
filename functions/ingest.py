"""Blueprint: BlobCreated events from the drop container (Event Grid trigger).

An Event Grid trigger rather than a blob trigger: it sees ``data.api`` (so only creating calls are
acted on) and lets the library stream the blob instead of receiving it whole.
"""

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("ingest")
@bp.event_grid_trigger(arg_name="event")
def ingest(event: func.EventGridEvent) -> None:
    from shared.handlers import on_blob_created

    on_blob_created(event)
