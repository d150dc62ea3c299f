"""The Functions app: wiring only. Each blueprint parses its triggers and calls `shared/`."""

import azure.functions as func

from functions.api import bp as api
from functions.ingest import bp as ingest
from functions.lifecycle import bp as lifecycle
from functions.queues import bp as queues
from functions.timers import bp as timers

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(ingest)
app.register_functions(lifecycle)
app.register_functions(api)
app.register_functions(queues)
app.register_functions(timers)
