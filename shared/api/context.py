"""The HTTP API's objects, built once per process and only when first needed.

The scoring path touches only ``scorer`` and ``activity`` (no storage client on the request); the
management routes pull in the run store on first use. Nothing here imports the Azure ML SDK: the
control plane is reached through ``shared.scoring.arm``. Tests pass their own pieces.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache as memo
from functools import cached_property
from typing import TYPE_CHECKING

from shared.scoring.activity import Activity
from shared.scoring.arm import Arm, ArmTarget, arm_target
from shared.scoring.client import Scorer, Sender
from shared.scoring.endpoints import ArmResolver, EndpointCache, Resolver
from shared.scoring.pool import HttpPool, PerLoop, new_client, new_scoring_client
from shared.scoring.teardown import Teardown
from shared.settings import Settings, get_settings
from shared.webhooks.delivery import Deliverer, new_webhook_client
from shared.webhooks.jobs import JobStore, ScoreQueue
from shared.webhooks.ssrf import Resolver as DnsResolver
from shared.webhooks.ssrf import system_resolver

if TYPE_CHECKING:
    from shared.records import RecordStore
    from shared.runs import RunStore

ACTIVITY_FLUSH_S = 60.0


class Api:
    def __init__(
        self,
        settings: Settings,
        *,
        records: Callable[[], RecordStore] | None = None,
        runs: Callable[[], RunStore] | None = None,
        target: Callable[[], ArmTarget] | None = None,
        resolver: Resolver | None = None,
        pool: HttpPool | None = None,
        sender: PerLoop[Sender] | None = None,
        webhook_pool: HttpPool | None = None,
        dns: DnsResolver = system_resolver,
        queue: ScoreQueue | None = None,
    ) -> None:
        self.settings = settings
        self._records_factory = records
        self._runs_factory = runs
        self._target = target or memo(lambda: arm_target(settings))
        self._resolver = resolver
        self.pool = pool or HttpPool(lambda: new_client(settings))  # ARM
        self.sender: PerLoop[Sender] = sender or PerLoop(lambda: new_scoring_client(settings))  # scoring URIs
        self.webhook_pool = webhook_pool or HttpPool(new_webhook_client)
        self.dns = dns
        self._queue = queue
        self._lock = threading.RLock()

    # ---------------------------------------------------------------------------------- scoring path

    @cached_property
    def arm(self) -> Arm:
        return Arm(self._target, self.pool)

    @cached_property
    def cache(self) -> EndpointCache:
        return EndpointCache(self._resolver or ArmResolver(self.arm), ttl=self.settings.endpoint_cache_s)

    @cached_property
    def scorer(self) -> Scorer:
        s = self.settings
        return Scorer(self.cache, self.sender.get, timeout_s=s.scoring_timeout_s, retries=s.scoring_retries)

    @cached_property
    def activity(self) -> Activity:
        idle_s = self.settings.idle_teardown_minutes * 60
        # flushed often enough that an idle check is never misled by more than a quarter of the period
        every = min(ACTIVITY_FLUSH_S, idle_s / 4) if idle_s > 0 else ACTIVITY_FLUSH_S
        return Activity(self.records, flush_every=every)

    # ---------------------------------------------------------------------------------- storage, SDK

    def records(self) -> RecordStore:
        with self._lock:
            if "_records" not in self.__dict__:
                if self._records_factory is not None:
                    self.__dict__["_records"] = self._records_factory()
                else:
                    from shared.records import BlobRecordStore
                    from shared.storage import container

                    self.__dict__["_records"] = BlobRecordStore(container(self.settings,
                                                                          self.settings.output_container))
            store: RecordStore = self.__dict__["_records"]
            return store

    @cached_property
    def runs(self) -> RunStore:
        if self._runs_factory is not None:
            return self._runs_factory()
        from shared.services import services

        return services().runs  # the shared store: transitions notify like every other

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.records())

    @cached_property
    def queue(self) -> ScoreQueue:
        return self._queue or ScoreQueue(self.settings)

    @cached_property
    def deliverer(self) -> Deliverer:
        return Deliverer(self.settings, self.webhook_pool.get, self.dns)

    @cached_property
    def teardown(self) -> Teardown:
        return Teardown(self.arm, lambda: self.runs, self.records, invalidate=self.cache.invalidate,
                        forget=self.activity.forget)


class _Holder:
    """The process-wide API context (a holder, so tests can swap it)."""

    value: Api | None = None
    lock = threading.Lock()


def api() -> Api:
    """The process-wide API context, built on first use."""
    with _Holder.lock:
        if _Holder.value is None:
            _Holder.value = Api(get_settings())
        return _Holder.value


def set_api(value: Api | None) -> None:
    """Replace the process-wide context (tests); None rebuilds it from settings on next use."""
    with _Holder.lock:
        _Holder.value = value
