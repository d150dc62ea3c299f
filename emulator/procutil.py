"""Child processes that die with the emulator (Linux ``PR_SET_PDEATHSIG``), and reaping leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setsid()  # own process group: stopping it stops its children too


def child_preexec() -> Callable[[], None] | None:
    """``preexec_fn`` for children: a new session, and SIGTERM if the emulator dies (Linux only)."""
    return _die_with_parent if sys.platform.startswith("linux") else None


def reap(pid: int | None, marker: str) -> bool:
    """Terminate a leftover child from an earlier run if ``pid`` still runs a command containing ``marker``."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if marker not in cmdline:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
        return True
    return False


async def stop_group(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """Stop a child and its process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
