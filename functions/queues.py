"""Blueprint: storage-queue triggers — scoring jobs with a callback, and the app's deferred work."""

import azure.functions as func

bp = func.Blueprint()


# The app's storage account (with managed identity: TUNEFLOW_STORAGE_CONNECTION__queueServiceUri); the
# queue name is an app setting so that two apps (or test runs) sharing an account do not share a queue.
@bp.function_name("score_jobs")
@bp.queue_trigger(arg_name="msg", queue_name="%TUNEFLOW_SCORE_QUEUE%", connection="TUNEFLOW_STORAGE_CONNECTION")
async def score_jobs(msg: func.QueueMessage) -> None:
    from shared.handlers import on_score_job

    await on_score_job(msg.get_body().decode("utf-8"))


# Deferred work: a dataset folder read once it has settled, a manifest's source prepared (longer than Event
# Grid's 30 s answer window allows), a run's signed webhook delivered.
@bp.function_name("work")
@bp.queue_trigger(arg_name="msg", queue_name="%TUNEFLOW_WORK_QUEUE%", connection="TUNEFLOW_STORAGE_CONNECTION")
async def work(msg: func.QueueMessage) -> None:
    from shared.handlers import on_work

    await on_work(msg.get_body().decode("utf-8"))
