"""Work kept off a request's path: a flush run on one background thread, one at a time.

The scoring path records in memory and asks for a flush when one is due; the flush runs on a single
worker thread, a request never waits for storage, and a failed flush is logged (its caller keeps what it
did not write for the next one).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)


class BackgroundFlush:
    def __init__(self, flush: Callable[[], None], what: str) -> None:
        self._flush, self._what = flush, what
        self._lock = threading.Lock()
        self._scheduled = False
        self._executor: ThreadPoolExecutor | None = None

    def schedule(self) -> None:
        """Run the flush soon, unless one is already waiting or running (it will see what is pending)."""
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
            self._executor = self._executor or ThreadPoolExecutor(1, thread_name_prefix=f"tuneflow-{self._what}")
            executor = self._executor
        executor.submit(self._run)

    def wait(self) -> None:
        """Wait for a scheduled flush to finish (tests; a process about to exit)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _run(self) -> None:
        try:
            self._flush()
        except Exception as exc:  # storage trouble must never surface on the request path
            log.warning("could not record %s: %s", self._what, type(exc).__name__)
        finally:
            with self._lock:
                self._scheduled = False
