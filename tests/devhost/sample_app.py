"""A small FunctionApp exercising every trigger kind devhost hosts (used only by tests/devhost).

Each non-HTTP invocation appends one JSON line to the file named by SAMPLE_RECORD_FILE, so the
tests can observe what the function received.
"""

from __future__ import annotations

import json
import os
import threading

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

_lock = threading.Lock()


def record(function: str, **fields: object) -> None:
    path = os.environ.get("SAMPLE_RECORD_FILE")
    if not path:
        return
    line = json.dumps({"function": function, **fields}, default=str)
    with _lock, open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


# ----------------------------------------------------------------------------- HTTP


@app.route(route="echo/{id:int}/{tail?}", methods=["GET", "POST", "PUT"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    doc = {
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "route_params": dict(req.route_params),
        "headers": {k: v for k, v in req.headers.items() if k.startswith("x-")},
        "body": req.get_body().decode("utf-8", "replace"),
    }
    status = int(req.params.get("status", "200"))
    return func.HttpResponse(
        json.dumps(doc),
        status_code=status,
        mimetype="application/json",
        headers={"X-Echo": "yes", "Set-Cookie": "a=1"},
    )


@app.route(route="echo/literal", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def echo_literal(req: func.HttpRequest) -> str:
    return "literal wins over {id}"


@app.route(route="text", auth_level=func.AuthLevel.ANONYMOUS)
def text(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("héllo", mimetype="text/html", charset="utf-8")


@app.route(route="secure/function")
def secure_function(req: func.HttpRequest) -> func.HttpResponse:  # app default auth level: FUNCTION
    return func.HttpResponse("function level ok")


@app.route(route="secure/admin", auth_level=func.AuthLevel.ADMIN)
def secure_admin(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin level ok")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom on purpose")


@app.route(route="async/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def async_hello(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']} from {context.function_name}")


@app.route(route="files/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.route_params.get("path", ""))


@app.route(route="size", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def size(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(str(len(req.get_body())))


@app.route(route="disabled", auth_level=func.AuthLevel.ANONYMOUS)
def disabled_fn(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("should be disabled by AzureWebJobs.disabled_fn.Disabled")


@app.route(route="enqueue", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="out", queue_name="devhost-done", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    out.set(req.get_body().decode())
    return func.HttpResponse("queued", status_code=202)


@app.route(route="save/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@app.blob_output(arg_name="saved", path="devhost-out/{name}.txt", connection="AzureWebJobsStorage")
def save(req: func.HttpRequest, saved: func.Out[bytes]) -> func.HttpResponse:
    saved.set(req.get_body())
    return func.HttpResponse("saved", status_code=201)


# ----------------------------------------------------------------------------- Event Grid


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    # A CloudEvents-schema delivery arrives as func.CloudEvent (azure-functions' converter decides by
    # the payload, not the annotation), so read the fields both kinds share defensively.
    data = event.get_json()
    record(
        "on_event",
        id=event.id,
        topic=getattr(event, "topic", None),
        subject=event.subject,
        event_type=getattr(event, "event_type", None) or getattr(event, "type", None),
        event_time=getattr(event, "event_time", None),
        data_version=getattr(event, "data_version", None),
        data=data,
        cls=type(event).__name__,
    )
    if isinstance(data, dict) and data.get("fail"):
        raise RuntimeError("event asked to fail")


@app.blob_trigger(
    arg_name="blob", path="devhost-in/{name}", connection="AzureWebJobsStorage", source=func.BlobSource.EVENT_GRID
)
def on_blob(blob: func.InputStream) -> None:
    content = blob.read()
    record("on_blob", name=blob.name, uri=blob.uri, length=blob.length, content=content.decode())
    if content == b"fail":
        raise RuntimeError("blob asked to fail")


# ----------------------------------------------------------------------------- timers


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    record("tick", past_due=timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def yearly(timer: func.TimerRequest) -> None:
    record("yearly", past_due=timer.past_due)


# ----------------------------------------------------------------------------- queues


@app.queue_trigger(arg_name="msg", queue_name="devhost-work", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="done", queue_name="devhost-done", connection="AzureWebJobsStorage")
async def work(msg: func.QueueMessage, done: func.Out[str]) -> None:
    body = msg.get_body().decode()
    record("work", id=msg.id, body=body, dequeue_count=msg.dequeue_count, insertion_time=msg.insertion_time)
    if body.startswith("fail"):
        raise RuntimeError("message asked to fail")
    done.set(body.upper())
