"""Entry points of the non-HTTP functions of the front door: the score-job queue and the idle timer."""

from __future__ import annotations

import logging

from shared.api.context import Api, api
from shared.scoring.idle import idle_teardown
from shared.webhooks.delivery import process_message

log = logging.getLogger(__name__)


async def on_score_job(text: str, ctx: Api | None = None) -> str:
    """A message of the score-job queue. Raises on storage trouble, so the host retries the message."""
    return await process_message(ctx or api(), text)


async def on_idle_timer(ctx: Api | None = None) -> list[str]:
    ctx = ctx or api()
    torn = await idle_teardown(ctx.settings, ctx.activity, ctx.teardown, lambda: ctx.runs)
    log.info("idle teardown: %s", ", ".join(torn) if torn else "nothing idle")
    return torn
