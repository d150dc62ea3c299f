"""tuneflow's exception hierarchy: every exception the app and its CLI raise is defined here.

Every error carries the context a user needs to act on it (``context``), says whether retrying can
help (``transient``), and says how the HTTP API answers it (``status``, ``code``). Those are class
attributes, so an answer is found along the class hierarchy (``http_answer`` in
``shared.api.http``), not by an ``isinstance`` chain. Event handlers use ``transient``: a transient
error is re-raised so Event Grid redelivers the event; a permanent one is recorded on the run and the
event is acknowledged.

    TuneflowError                       500 internal_error
    ├── SettingsError                   500 misconfigured: a setting is missing or malformed (names it)
    ├── InputError                      400 invalid_request: bad input from a caller (event, body, argument)
    │   ├── EventError                  an event payload that cannot be parsed
    │   ├── CallbackRefused             400 callback_refused: a callback URL tuneflow will not call (SSRF guard)
    │   ├── ManifestError               400 invalid_manifest: a manifest tuneflow will not run (each key path named)
    │   └── SignatureError              a webhook whose signature or timestamp does not check out
    ├── ApiError                        an HTTP answer chosen by the route (its own status, code, param)
    ├── DatasetError                    a dataset that cannot be read at all (gone while read)
    │   └── SourceError                 a manifest `source` dataset that cannot be prepared
    ├── ConflictError                   409 conflict (transient): an ETag compare-and-swap lost every retry
    ├── AzureMLError                    502 azureml_error: Azure ML said no
    │   ├── ResourceNotFound            404 not_found: the endpoint, deployment, job or model does not exist
    │   │   └── EndpointNotFound        404 endpoint_not_found: nothing to score
    │   ├── ModelUnavailableError       base model missing, archived or deprecated in the registry
    │   ├── ComputeError                compute missing, failed, or not allowed for the model
    │   ├── QuotaError                  the VM family's core quota cannot hold the job or deployment
    │   └── FinetuneParameterError      a fine-tune parameter the component does not accept
    ├── ScoringError                    a scoring call failed (its own status and code)
    ├── UnrecognisedResponse            502 bad_deployment_response: a deployment answer with no text in it
    ├── TransportError                  502 transport_error: an HTTP exchange failed (no secrets in it)
    │   └── TransportTimeout            504 timeout: it did not finish in time
    ├── TransientError                  503 unavailable (transient): a dependency is briefly unavailable
    └── CliError                        the command-line tool cannot go on (exit code 2)
        ├── ApiUnreachable              no answer from the API (connection refused, DNS, timeout)
        ├── ApiFailure                  the API answered with an error
        ├── UploadRefused               an upload that cannot go ahead as asked
        ├── PrepareError                a `prepare` that cannot go on
        └── RunNotFound                 no run with that id
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TuneflowError(Exception):
    """Base class. ``message`` is for humans; ``context`` holds the facts behind it."""

    transient: bool = False
    status: int = 500
    code: str = "internal_error"
    param: str | None = None  # where in a request body the problem is, when it is in one

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self) -> str:
        return self.message

    def headers(self) -> Mapping[str, str]:
        """Extra HTTP headers of the answer (``Retry-After``)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message, **self.context}


class SettingsError(TuneflowError):
    """One or more settings are missing or malformed."""

    code = "misconfigured"


class InputError(TuneflowError):
    """A caller sent something tuneflow cannot use."""

    status = 400
    code = "invalid_request"


class EventError(InputError):
    """An event payload is malformed or missing a required field."""


class CallbackRefused(InputError):
    """A callback URL tuneflow will not call."""

    code = "callback_refused"
    param = "callback_url"


class ManifestError(InputError):
    """A manifest (``tuneflow.json`` or blob metadata) tuneflow will not run; ``problems`` name each key path."""

    code = "invalid_manifest"

    def __init__(self, message: str, problems: list[str], **context: Any) -> None:
        super().__init__(message, problems=problems, **context)
        self.problems = problems


class SignatureError(InputError):
    """A webhook whose signature or timestamp does not check out."""

    status = 401
    code = "invalid_signature"


class ApiError(TuneflowError):
    """An error with its HTTP answer chosen where it is raised: status, code and where the problem is."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, status=status, code=code, param=param)
        self.status = status  # per instance, on purpose
        self.code = code
        self.param = param
        self._headers = dict(headers or {})

    def headers(self) -> Mapping[str, str]:
        return self._headers


class DatasetError(TuneflowError):
    """The dataset cannot be read at all (validation problems go in the report instead)."""

    status = 422
    code = "dataset_unreadable"


class SourceError(DatasetError):
    """A manifest's ``source`` (a Hugging Face dataset) cannot be loaded or prepared."""

    code = "source_unavailable"


class ConflictError(TuneflowError):
    """A conditional write kept losing to concurrent writers."""

    transient = True
    status = 409
    code = "conflict"


class AzureMLError(TuneflowError):
    """Azure Machine Learning refused a request."""

    status = 502
    code = "azureml_error"


class ResourceNotFound(AzureMLError):
    """The Azure ML resource does not exist."""

    status = 404
    code = "not_found"


class EndpointNotFound(ResourceNotFound):
    """No such endpoint (or it is being deleted): nothing to score."""

    code = "endpoint_not_found"


class ModelUnavailableError(AzureMLError):
    """The base model cannot be fine-tuned: missing, archived or deprecated."""


class ComputeError(AzureMLError):
    """The compute target cannot run the fine-tuning job."""


class QuotaError(AzureMLError):
    """The VM family's core quota cannot hold the job or deployment (it would queue forever)."""

    status = 409
    code = "quota_exceeded"


class FinetuneParameterError(AzureMLError):
    """A fine-tuning parameter is not accepted by the pipeline component."""


class ScoringError(TuneflowError):
    """A scoring call failed; ``status`` and ``code`` are what tuneflow answers."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.status = status  # per instance, on purpose
        self.code = code
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:  # type: ignore[override]
        return self.status in (429, 502, 503, 504)

    def headers(self) -> Mapping[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(max(1, round(self.retry_after)))}


class UnrecognisedResponse(TuneflowError):
    """The deployment answered with a shape tuneflow cannot read text from."""

    status = 502
    code = "bad_deployment_response"


class TransportError(TuneflowError):
    """The exchange failed (connection refused or reset, malformed response); never carries secrets."""

    transient = True
    status = 502
    code = "transport_error"


class TransportTimeout(TransportError):
    """The exchange did not finish within its timeout."""

    status = 504
    code = "timeout"


class TransientError(TuneflowError):
    """A dependency is temporarily unavailable; the same call may succeed later."""

    transient = True
    status = 503
    code = "unavailable"
    retry_after_s: int = 5

    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class CliError(TuneflowError):
    """The command-line tool cannot go on; the message says why and what to do instead."""


class ApiUnreachable(CliError):
    """No answer from the API (connection refused, DNS, timeout)."""


class ApiFailure(CliError):
    """The API answered with an error; ``str()`` is the line to print."""


class UploadRefused(CliError):
    """The upload cannot go ahead as asked; the message says why and what to do."""


class PrepareError(CliError):
    """`prepare` cannot go on; the message says why and what to do instead."""


class RunNotFound(CliError):
    """No run with that id."""
