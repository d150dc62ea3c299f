"""The Functions app: wiring only. Each blueprint parses its triggers and calls `shared/`."""

import azure.functions as func

from functions.ingest import bp as ingest
from functions.lifecycle import bp as lifecycle

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(ingest)
app.register_functions(lifecycle)
