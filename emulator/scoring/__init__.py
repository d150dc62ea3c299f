"""One deployment's scoring server (the process behind one Azure ML online deployment).

``python -m emulator.scoring --model FOLDER --port N [--host 127.0.0.1] [--request-timeout SECONDS]
[--ready-file PATH] [--threads 1]`` loads the MLflow model folder and serves:

- ``POST /score``: Azure ML chat-completion bodies, ``{"input_data": {"input_string": [messages...],
  "parameters": {...}}}`` or the notebook's ``{"input_data": {"input_string": [[messages...]], ...},
  "params": {}}``; parameters ``temperature``, ``top_p``, ``max_new_tokens`` (or ``max_tokens``),
  ``do_sample``. Answers MLflow records orient, ``[{"0": "<generated text>"}]`` (one record per
  conversation); 400 ``{"error": {"code": "BadRequest", "message": ...}}`` on a bad body, 408
  ``RequestTimeout`` past the request timeout, 503 while loading.
- ``GET /``, ``/readiness``, ``/health``: 200 once the model is loaded (503 before);
  ``GET /liveness``: 200 while the process runs.

``--port 0`` picks a free port; the ready file (JSON ``{"pid", "host", "port", "url"}``) is written
once the model is loaded and the server listens. Key auth and traffic splitting are the endpoint
router's job, not this process's.
"""
