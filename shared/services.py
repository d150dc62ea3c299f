"""The composition root: every object a handler uses, wired once per process from settings and connections.

Each part is built on first use (``once``), so a scoring call builds the scorer and never a storage or
Azure ML SDK client, and an ingest never builds the scoring path. Tests hand in fakes for any part:
``Services(settings, records=MemoryRecordStore(), control=...)`` (the fakes live in ``tests/support``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from shared.connections import AzureML, Connections
from shared.lazy import once, provide
from shared.settings import Settings, get_settings
from shared.webhooks.ssrf import Resolver as DnsResolver
from shared.webhooks.ssrf import system_resolver

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

    from shared.endpoints.activity import Activity
    from shared.endpoints.control import ControlPlane
    from shared.endpoints.live import LiveStats
    from shared.endpoints.teardown import Teardown
    from shared.ingest import Ingestor
    from shared.notify import Notifier
    from shared.queue import JsonQueue
    from shared.records import RecordStore
    from shared.runs import Run, RunStore
    from shared.scoring.client import Scorer, Sender
    from shared.scoring.pool import HttpPool, PerLoop
    from shared.scoring.resolve import EndpointCache, Resolver
    from shared.scoring.usage import TokenCounter
    from shared.webhooks.delivery import Deliverer
    from shared.webhooks.jobs import JobStore, ScoreQueue
    from shared.webhooks.runs import RunWebhooks

ACTIVITY_FLUSH_S = 60.0


class Services:
    def __init__(self, settings: Settings, connections: Connections | None = None, *,
                 dns: DnsResolver = system_resolver, **parts: Any) -> None:
        self.settings = settings
        self.connections = connections or Connections(settings)
        self.dns = dns
        provide(self, **parts)

    # ------------------------------------------------------------------------------ storage and runs

    def container(self, name: str) -> ContainerClient:
        from shared.storage import ensure_container

        return ensure_container(self.connections.blob_service(), name)

    @once
    def records(self) -> RecordStore:
        from shared.records import BlobRecordStore

        return BlobRecordStore(self.container(self.settings.output_container))

    @once
    def notifier(self) -> Notifier:
        from shared.notify import Notifier, TopicPublisher

        s, c = self.settings, self.connections
        return Notifier(s, self.records, lambda: TopicPublisher(str(s.eventgrid_topic_endpoint), s.eventgrid_topic_key,
                                                                c.identity, c.http))

    @once
    def run_webhooks(self) -> RunWebhooks:
        from shared.webhooks.runs import RunWebhooks

        return RunWebhooks(self.settings, lambda: self.work)

    @once
    def runs(self) -> RunStore:
        from shared.runs import RunStore

        notifier, webhooks = self.notifier, self.run_webhooks

        def on_transition(run: Run, index: int) -> None:
            notifier.on_transition(run, index)
            webhooks.on_transition(run, index)

        return RunStore(self.records, on_transition=on_transition)

    @once
    def work(self) -> JsonQueue:
        """Deferred work (settled folders, sources to prepare, run webhooks): ``TUNEFLOW_WORK_QUEUE``."""
        from shared.queue import JsonQueue

        return JsonQueue(lambda: self.connections.queue(self.settings.work_queue))

    @once
    def ingestor(self) -> Ingestor:
        from shared.azureml.submit import PipelineSubmitter
        from shared.drops import DropLedger
        from shared.folders import SettledFolders
        from shared.ingest import Ingestor

        self.container(self.settings.drop_container)
        self.container(self.settings.output_container)
        return Ingestor(self.settings, self.connections.blob_service(), self.runs,
                        PipelineSubmitter(self.settings, lambda: self.ml), ledger=DropLedger(self.records),
                        settled=SettledFolders(self.records), work=self.work, check_url=self.notify_url_problem)

    def notify_url_problem(self, url: str) -> str | None:
        """Why a manifest's ``notify_url`` would never be called (webhooks off, or the SSRF guard), or None."""
        from shared.errors import CallbackRefused
        from shared.webhooks import ssrf

        s = self.settings
        if not s.webhook_secret:
            return "run webhooks are not configured here (TUNEFLOW_WEBHOOK_SECRET is unset)"
        try:
            ssrf.check(url, allow_http=s.webhook_allow_http, allow_private=s.webhook_allow_private, resolver=self.dns)
        except CallbackRefused as exc:
            return exc.message.replace("callback_url", "notify_url")
        return None

    @once
    def read_test_sample(self) -> Callable[[str], bytes | None]:
        """Reads the first row of a prepared test split (a ranged read, not the whole file)."""
        output = self.container(self.settings.output_container)

        def first_row(path: str) -> bytes | None:
            head = output.download_blob(path, offset=0, length=64 * 1024).readall()
            return head.split(b"\n", 1)[0] or None

        return first_row

    @once
    def read_test_split(self) -> Callable[[str], Iterator[bytes]]:
        """Reads a prepared test split line by line (streamed: a split is read once per evaluation)."""
        output = self.container(self.settings.output_container)

        def lines(path: str) -> Iterator[bytes]:
            rest = b""
            for chunk in output.download_blob(path).chunks():
                *complete, rest = (rest + chunk).split(b"\n")
                yield from complete
            if rest:
                yield rest

        return lines

    # ------------------------------------------------------------------------------ Azure ML

    @once
    def ml(self) -> AzureML:
        """The azure-ai-ml clients (jobs, models, registry); never on the HTTP path."""
        return self.connections.ml()

    @once
    def control(self) -> ControlPlane:
        from shared.endpoints.control import ControlPlane

        c = self.connections
        return ControlPlane(lambda: c.target, lambda: c.credential, c.http)

    # ------------------------------------------------------------------------------ endpoints, scoring

    @once
    def resolver(self) -> Resolver:
        from shared.scoring.resolve import ControlPlaneResolver

        return ControlPlaneResolver(self.control)

    @once
    def cache(self) -> EndpointCache:
        from shared.scoring.resolve import EndpointCache

        return EndpointCache(self.resolver, ttl=self.settings.endpoint_cache_s)

    @once
    def tokens(self) -> TokenCounter | None:
        """Counts usage a deployment does not report (``TUNEFLOW_TOKENIZER_DIR``), or None."""
        from shared.scoring.usage import load_counter

        return load_counter(self.settings.tokenizer_dir)

    @once
    def sender(self) -> PerLoop[Sender]:
        """The scoring HTTP client, one per event loop (connections stay open across invocations)."""
        from shared.scoring.pool import PerLoop, new_scoring_client

        return PerLoop(lambda: new_scoring_client(self.connections.tls()))

    @once
    def scorer(self) -> Scorer:
        from shared.scoring.client import Scorer

        s = self.settings
        return Scorer(self.cache, self.sender.get, timeout_s=s.scoring_timeout_s, retries=s.scoring_retries,
                      observe=self.live.observe)

    @once
    def live(self) -> LiveStats:
        """Live traffic per deployment as the scoring proxy sees it (a rollout's evidence)."""
        from shared.endpoints.live import LiveStats

        return LiveStats(lambda: self.records)

    @once
    def activity(self) -> Activity:
        from shared.endpoints.activity import Activity

        idle_s = self.settings.idle_teardown_minutes * 60
        # flushed often enough that an idle check is never misled by more than a quarter of the period
        every = min(ACTIVITY_FLUSH_S, idle_s / 4) if idle_s > 0 else ACTIVITY_FLUSH_S
        return Activity(lambda: self.records, flush_every=every)

    @once
    def teardown(self) -> Teardown:
        from shared.endpoints.teardown import Teardown

        return Teardown(self.control, lambda: self.runs, lambda: self.records, invalidate=self.cache.invalidate,
                        forget=self.activity.forget)

    # ------------------------------------------------------------------------------ scoring jobs, webhooks

    @once
    def jobs(self) -> JobStore:
        from shared.webhooks.jobs import JobStore

        return JobStore(self.records)

    @once
    def queue(self) -> ScoreQueue:
        from shared.webhooks.jobs import ScoreQueue

        return ScoreQueue(lambda: self.connections.queue(self.settings.score_queue))

    @once
    def webhook_pool(self) -> HttpPool:
        from shared.scoring.pool import PerLoop
        from shared.webhooks.delivery import new_webhook_client

        return PerLoop(new_webhook_client)

    @once
    def deliverer(self) -> Deliverer:
        from shared.webhooks.delivery import Deliverer

        return Deliverer(self.settings, self.webhook_pool.get, self.dns)


class _Process:
    value: Services | None = None
    lock = threading.Lock()


def services() -> Services:
    """The process-wide services, built from the environment's settings on first use."""
    with _Process.lock:
        if _Process.value is None:
            _Process.value = Services(get_settings())
        return _Process.value
