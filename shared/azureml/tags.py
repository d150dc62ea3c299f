"""The tags tuneflow puts on Azure ML jobs, models and deployments, and reads back from their events.

Tags are how an event or a live resource is traced to its run: one spelling each, here.
"""

RUN_ID = "tuneflow.run_id"  # job, model, deployment: the run that made it
DATASET = "tuneflow.dataset"  # job, model: the drop it was trained on
SHA256 = "tuneflow.sha256"  # job, model: the dataset's content hash
BASE_MODEL = "tuneflow.base_model"  # job, model
JOB_NAME = "tuneflow.job_name"  # model: the pipeline job whose output it is
MODEL = "tuneflow.model"  # deployment: the "name:version" it serves
AUTO_DEPLOY = "tuneflow.auto_deploy"  # model registered outside tuneflow: "true" asks for a deployment
IDLE_MINUTES = "tuneflow.idle_teardown_minutes"  # endpoint: its own idle teardown (a manifest chose it)
