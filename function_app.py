"""The Functions app: wiring only. Each blueprint parses its triggers and calls `shared/`."""

import azure.functions as func

from functions.ingest import bp as ingest

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(ingest)
