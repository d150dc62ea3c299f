"""devhost: a local stand-in for the Azure Functions host (what `func start` runs).

It indexes a `FunctionApp` the way the Python worker does and serves it with the host's external
contract: `/api/<route>` HTTP triggers with auth levels and keys, the Event Grid and blob webhooks
under `/runtime/webhooks/`, timers, queue triggers on Azurite, and the admin API. See README.md.
It imports only azure.functions, its own dependencies and the app module it hosts.
"""

__version__ = "0.1.0"
