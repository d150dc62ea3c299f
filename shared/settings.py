"""Typed settings, parsed once from the environment (Functions app settings).

Each field's metadata names its environment variable and documents it; the README's settings table
and ``local.settings.json.example`` are held against this class by a test. Parsing collects every
problem and raises one ``SettingsError`` naming each variable and what it expects.
"""

from __future__ import annotations

import json
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from typing import Any, Literal

from shared.errors import SettingsError
from shared.integers import parse_int

Policy = Literal["strict", "drop-invalid"]
_ENDPOINT_NAME = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
_QUEUE_NAME = re.compile(r"[a-z0-9][-a-z0-9]{1,61}[a-z0-9]")


def _s(env: str, doc: str, default: Any = None, *, secret: bool = False) -> Any:
    meta = {"env": env, "doc": doc, "secret": secret}
    if isinstance(default, dict):  # mutable defaults need a factory; settings stay read-only
        return field(default_factory=lambda: types.MappingProxyType(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # Storage
    storage_connection: str | None = _s(
        "TUNEFLOW_STORAGE_CONNECTION", "Storage connection string (Azurite locally).", secret=True
    )
    storage_account_url: str | None = _s(
        "TUNEFLOW_STORAGE_ACCOUNT_URL",
        "Blob account URL used with managed identity when no connection string is set.",
    )
    drop_container: str = _s("TUNEFLOW_DROP_CONTAINER", "Container users drop datasets into.", "datasets")
    output_container: str = _s(
        "TUNEFLOW_OUTPUT_CONTAINER", "The app's own container: runs, reports, prepared data.", "tuneflow"
    )
    # Validation
    max_file_mb: int = _s("TUNEFLOW_MAX_FILE_MB", "Largest dataset file accepted, in MiB.", 2048)
    max_line_kb: int = _s("TUNEFLOW_MAX_LINE_KB", "Largest single row (JSONL line), in KiB.", 8192)
    min_examples: int = _s("TUNEFLOW_MIN_EXAMPLES", "Fewest valid training examples accepted.", 10)
    validation_policy: Policy = _s(
        "TUNEFLOW_VALIDATION_POLICY",
        "`strict` (any error rejects) or `drop-invalid` (drop bad rows up to the fraction below).",
        "strict",
    )
    max_drop_fraction: float = _s(
        "TUNEFLOW_MAX_DROP_FRACTION", "drop-invalid: reject when more than this fraction is invalid.", 0.05
    )
    test_fraction: float = _s(
        "TUNEFLOW_TEST_FRACTION", "Share of rows held out as the test split when none is dropped.", 0.05
    )
    report_examples: int = _s("TUNEFLOW_REPORT_EXAMPLES", "Examples kept per error code in a report.", 5)
    reserved_tokens: tuple[str, ...] = _s(
        "TUNEFLOW_RESERVED_TOKENS",
        "Comma-separated chat-template tokens refused inside content; empty = the base model's own.",
        (),
    )
    # Azure ML
    subscription_id: str | None = _s("TUNEFLOW_SUBSCRIPTION_ID", "Azure subscription of the workspace.")
    resource_group: str | None = _s("TUNEFLOW_RESOURCE_GROUP", "Resource group of the workspace.")
    workspace: str | None = _s("TUNEFLOW_WORKSPACE", "Azure ML workspace name.")
    azure_client_id: str | None = _s(
        "AZURE_CLIENT_ID",
        "Client id of the app's user-assigned managed identity (empty: system-assigned or your login).",
    )
    emulator_connection: str | None = _s(
        "TUNEFLOW_EMULATOR_CONNECTION",
        "Path to the local emulator's connection.json; when set, Azure ML calls go to the emulator.",
    )
    registry: str = _s("TUNEFLOW_REGISTRY", "Registry holding the base model and pipeline.", "azureml")
    base_model: str = _s(
        "TUNEFLOW_BASE_MODEL", "Base model to fine-tune (a registry model Azure fine-tunes today).",
        "Phi-4-mini-instruct",
    )
    base_model_version: str | None = _s(
        "TUNEFLOW_BASE_MODEL_VERSION", "Pin a base model version (default: the `latest` label)."
    )
    pipeline_component: str = _s(
        "TUNEFLOW_PIPELINE_COMPONENT", "Registry pipeline component.", "chat_completion_pipeline"
    )
    pipeline_version: str = _s(
        "TUNEFLOW_PIPELINE_VERSION", "Component version, or `latest` for the label.", "latest"
    )
    compute: str = _s(
        "TUNEFLOW_COMPUTE", "Compute cluster for the pipeline, or `serverless`.", "gpu-cluster-big"
    )
    serverless_instance_type: str = _s(
        "TUNEFLOW_SERVERLESS_INSTANCE_TYPE",
        "VM size when TUNEFLOW_COMPUTE=serverless.",
        "Standard_NC24ads_A100_v4",
    )
    gpus_per_node: int | None = _s(
        "TUNEFLOW_GPUS_PER_NODE", "GPUs per node for serverless compute (clusters report their own)."
    )
    num_nodes: int = _s("TUNEFLOW_NUM_NODES", "Nodes for the fine-tuning step (multi-node runs).", 1)
    experiment: str = _s("TUNEFLOW_EXPERIMENT", "Azure ML experiment name.", "tuneflow-chat-finetune")
    datastore: str = _s(
        "TUNEFLOW_DATASTORE",
        "Azure ML datastore over the output container (created on first submission).",
        "tuneflow",
    )
    finetune_params: Mapping[str, Any] = _s(
        "TUNEFLOW_FINETUNE_PARAMS",
        "JSON object of pipeline inputs overriding the defaults, e.g. {\"num_train_epochs\": 1}.",
        {},
    )

    # Manifests: when a folder's run starts, and the bounds the platform team sets on what a manifest may choose
    settle_seconds: float = _s(
        "TUNEFLOW_SETTLE_SECONDS",
        "A dataset folder's run starts once its files have been quiet this long (uploads are not atomic).",
        30.0,
    )
    work_queue: str = _s(
        "TUNEFLOW_WORK_QUEUE",
        "Storage queue of deferred work: settled folders, `source` datasets to prepare, run webhooks.",
        "tuneflow-work",
    )
    hub_mirror_dir: str | None = _s(
        "TUNEFLOW_HUB_MIRROR_DIR",
        "Local folder mirroring Hugging Face datasets (`<dir>/<owner>/<name>`) for manifest `source`s; "
        "unset: they load from the hub.",
    )
    allowed_registries: tuple[str, ...] = _s(
        "TUNEFLOW_ALLOWED_REGISTRIES", "Comma-separated registries a manifest may choose; empty = any.", ()
    )
    allowed_base_models: tuple[str, ...] = _s(
        "TUNEFLOW_ALLOWED_BASE_MODELS", "Comma-separated base models a manifest may choose; empty = any.", ()
    )
    allowed_computes: tuple[str, ...] = _s(
        "TUNEFLOW_ALLOWED_COMPUTES",
        "Comma-separated computes (cluster names, `serverless`) a manifest may choose; empty = any.",
        (),
    )
    allowed_instance_types: tuple[str, ...] = _s(
        "TUNEFLOW_ALLOWED_INSTANCE_TYPES",
        "Comma-separated VM sizes a manifest may choose (training and deployment); empty = any.",
        (),
    )
    max_nodes: int = _s("TUNEFLOW_MAX_NODES", "Most fine-tuning nodes a manifest may ask for.", 4)
    max_instances: int = _s("TUNEFLOW_MAX_INSTANCES", "Most deployment instances a manifest may ask for.", 4)
    endpoint_prefix: str = _s(
        "TUNEFLOW_ENDPOINT_PREFIX", "Endpoints a manifest names must start with this (empty: any name).", ""
    )

    # Lifecycle: registration and deployment
    model_name: str | None = _s(
        "TUNEFLOW_MODEL_NAME", "Registered model name (default `<base model>-ft`, `/` replaced by `-`)."
    )
    endpoint: str = _s(
        "TUNEFLOW_ENDPOINT", "Managed online endpoint (3-32 chars, unique per region).", "tuneflow-chat"
    )
    instance_type: str = _s(
        "TUNEFLOW_INSTANCE_TYPE",
        "VM size of deployments; checked against the model's inference_compute_allow_list.",
        "Standard_NC24ads_A100_v4",
    )
    instance_count: int = _s("TUNEFLOW_INSTANCE_COUNT", "Instances per deployment.", 1)
    request_timeout_ms: int = _s(
        "TUNEFLOW_REQUEST_TIMEOUT_MS", "Scoring request timeout of deployments, in ms.", 90000
    )
    liveness_initial_delay: int = _s(
        "TUNEFLOW_LIVENESS_INITIAL_DELAY",
        "Seconds before a deployment's liveness probe starts (large models load slowly).",
        600,
    )
    sweep_after_minutes: float = _s(
        "TUNEFLOW_SWEEP_AFTER_MINUTES",
        "The reconciler ingests a dataset blob no event brought once it is this old; 0 = never sweep.",
        5.0,
    )
    sweep_max: int = _s("TUNEFLOW_SWEEP_MAX", "Most dataset blobs the reconciler ingests per pass.", 10)
    reconcile_schedule: str = _s(
        "TUNEFLOW_RECONCILE_SCHEDULE", "NCRONTAB schedule of the reconciler timer.", "0 */2 * * * *"
    )
    eventgrid_topic_endpoint: str | None = _s(
        "TUNEFLOW_EVENTGRID_TOPIC_ENDPOINT", "Event Grid custom topic for run notifications (optional)."
    )
    eventgrid_topic_key: str | None = _s(
        "TUNEFLOW_EVENTGRID_TOPIC_KEY",
        "Key of that topic; without it, managed identity is used.",
        secret=True,
    )

    progress_seconds: float = _s(
        "TUNEFLOW_PROGRESS_SECONDS",
        "How often a training run's metrics are read into its progress (and a progress event sent), 1-300 s.",
        5.0,
    )
    # Evaluation and the quality gate: a candidate is scored on the run's test split beside what serves
    eval_max_rows: int = _s(
        "TUNEFLOW_EVAL_MAX_ROWS", "Test-split examples a candidate is evaluated on (a seeded sample).", 200
    )
    eval_concurrency: int = _s(
        "TUNEFLOW_EVAL_CONCURRENCY", "Evaluation scoring calls in flight at once, per deployment.", 4
    )
    eval_chunk_seconds: float = _s(
        "TUNEFLOW_EVAL_CHUNK_SECONDS",
        "Longest one evaluation chunk scores before it saves and hands on (below every function timeout).",
        20.0,
    )
    eval_max_new_tokens: int = _s(
        "TUNEFLOW_EVAL_MAX_NEW_TOKENS", "Longest answer generated per evaluation example, in tokens.", 64
    )
    eval_compare_base: bool = _s(
        "TUNEFLOW_EVAL_COMPARE_BASE",
        "Also evaluate the base model, on a deployment of its own for the evaluation's length (in Azure: one more "
        "GPU instance meanwhile).",
        False,
    )
    gate_enabled: bool = _s(
        "TUNEFLOW_GATE_ENABLED", "Evaluate and gate candidates before they take traffic (false: smoke test only).",
        True,
    )
    gate_metric: Literal["token_f1", "exact_match", "rouge_l"] = _s(
        "TUNEFLOW_GATE_METRIC", "Metric the gate compares: `token_f1`, `exact_match` or `rouge_l`.", "token_f1"
    )
    gate_min_delta: float = _s(
        "TUNEFLOW_GATE_MIN_DELTA",
        "The candidate's metric must be at least the serving deployment's plus this (0: not worse).",
        0.0,
    )
    gate_max_error_rate: float = _s(
        "TUNEFLOW_GATE_MAX_ERROR_RATE", "Largest share of evaluation calls a candidate may fail.", 0.02
    )
    gate_min_score: float = _s(
        "TUNEFLOW_GATE_MIN_SCORE", "The metric a first deployment (nothing serving yet) must reach.", 0.0
    )
    rollout_strategy: Literal["immediate", "canary", "mirror"] = _s(
        "TUNEFLOW_ROLLOUT_STRATEGY",
        "How a promoted candidate takes the traffic: `immediate` (one switch), `canary` (TUNEFLOW_ROLLOUT_STEPS) "
        "or `mirror` (a shadow share for the bake, then the switch).",
        "immediate",
    )
    rollout_mirror_percent: int = _s(
        "TUNEFLOW_ROLLOUT_MIRROR_PERCENT", "Mirror: the share of live calls copied to the candidate (1-50).", 10
    )
    rollout_steps: tuple[int, ...] = _s(
        "TUNEFLOW_ROLLOUT_STEPS", "Canary: the candidate's traffic percentages, rising, ending at 100.", (10, 50, 100)
    )
    rollout_bake_minutes: float = _s(
        "TUNEFLOW_ROLLOUT_BAKE_MINUTES", "Canary: minutes at each step before the next one.", 10.0
    )
    rollout_max_error_rate: float = _s(
        "TUNEFLOW_ROLLOUT_MAX_ERROR_RATE", "Canary: roll back when the candidate fails more of its live calls.", 0.02
    )
    rollout_max_p95_ratio: float = _s(
        "TUNEFLOW_ROLLOUT_MAX_P95_RATIO",
        "Canary: roll back when the candidate's live p95 latency exceeds the serving deployment's by this factor.",
        1.5,
    )
    rollout_min_requests: int = _s(
        "TUNEFLOW_ROLLOUT_MIN_REQUESTS", "Canary: live calls a deployment needs before its numbers are judged.", 20
    )
    gate_locked: bool = _s(
        "TUNEFLOW_GATE_LOCKED", "A manifest's `gate` may only make the gate stricter, never looser.", False
    )

    # HTTP API and scoring
    max_request_kb: int = _s(
        "TUNEFLOW_MAX_REQUEST_KB", "Largest scoring request body accepted, in KiB (larger: 413).", 1024
    )
    scoring_timeout_s: float = _s(
        "TUNEFLOW_SCORING_TIMEOUT_S",
        "Budget of one scoring call, retries included, in seconds (below the Functions 230 s HTTP limit).",
        120.0,
    )
    scoring_retries: int = _s(
        "TUNEFLOW_SCORING_RETRIES", "Retries of a scoring call answered 429/503 (Retry-After honoured).", 2
    )
    endpoint_cache_s: int = _s(
        "TUNEFLOW_ENDPOINT_CACHE_S",
        "Seconds an endpoint's scoring URI, key and deployments are cached (refreshed early on 401/403).",
        300,
    )
    tokenizer_dir: str | None = _s(
        "TUNEFLOW_TOKENIZER_DIR",
        "Directory with the base model's `tokenizer.json` and `tokenizer_config.json`: usage a deployment does "
        "not report is counted with them; unset: such usage is omitted.",
    )
    teardown_key: str | None = _s(
        "TUNEFLOW_TEARDOWN_KEY",
        "Separate key for the teardown routes; unset: they need the admin (master) key.",
        secret=True,
    )
    webhook_secret: str | None = _s(
        "TUNEFLOW_WEBHOOK_SECRET",
        "Signing secret of webhook callbacks (`whsec_<base64>` or any string); unset: no callbacks.",
        secret=True,
    )
    webhook_allow_http: bool = _s(
        "TUNEFLOW_WEBHOOK_ALLOW_HTTP", "Accept `http://` callback URLs (default: https only).", False
    )
    webhook_allow_private: bool = _s(
        "TUNEFLOW_WEBHOOK_ALLOW_PRIVATE",
        "Accept callbacks to private, loopback and link-local addresses (SSRF guard off).",
        False,
    )
    webhook_attempts: int = _s(
        "TUNEFLOW_WEBHOOK_ATTEMPTS", "Delivery attempts of a callback before it is given up.", 8
    )
    webhook_backoff_s: float = _s(
        "TUNEFLOW_WEBHOOK_BACKOFF_S", "Delay before the first callback retry, in seconds; doubles each time.", 5.0
    )
    score_queue: str = _s(
        "TUNEFLOW_SCORE_QUEUE", "Storage queue carrying scoring jobs that have a callback.", "tuneflow-score-jobs"
    )
    idle_teardown_minutes: float = _s(
        "TUNEFLOW_IDLE_TEARDOWN_MINUTES",
        "Delete an endpoint that served no scoring call for this long; 0 = never.",
        0.0,
    )
    idle_teardown_schedule: str = _s(
        "TUNEFLOW_IDLE_TEARDOWN_SCHEDULE", "NCRONTAB schedule of the idle-teardown timer.", "0 */5 * * * *"
    )

    @property
    def azureml_configured(self) -> bool:
        return self.emulator_connection is not None or None not in (
            self.subscription_id,
            self.resource_group,
            self.workspace,
        )

    @property
    def registered_model_name(self) -> str:
        return self.model_name or f"{self.base_model.replace('/', '-')}-ft"

    def require_azureml(self) -> None:
        if not self.azureml_configured:
            raise SettingsError(
                "Azure ML is not configured: set TUNEFLOW_SUBSCRIPTION_ID, TUNEFLOW_RESOURCE_GROUP and "
                "TUNEFLOW_WORKSPACE, or TUNEFLOW_EMULATOR_CONNECTION for the local emulator"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[f.name] = _parse(hints[f.name], raw.strip())
            except ValueError as exc:
                problems.append(f"{name}: {exc} (got {raw!r})" if not f.metadata["secret"] else f"{name}: {exc}")
        failed = {problem.split(":", 1)[0] for problem in problems}
        settings = cls(**values)  # a value that did not parse keeps its default, so every range check still runs
        problems.extend(p for p in settings._check() if p.split(":", 1)[0] not in failed)
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems), settings=problems)
        return settings

    def _check(self) -> list[str]:
        problems = []
        if not self.storage_connection and not self.storage_account_url:
            problems.append(
                "TUNEFLOW_STORAGE_CONNECTION or TUNEFLOW_STORAGE_ACCOUNT_URL: one is required "
                "(a connection string, or the blob account URL for managed identity)"
            )
        for env, value, lo, hi in (
            ("TUNEFLOW_MAX_DROP_FRACTION", self.max_drop_fraction, 0.0, 1.0),
            ("TUNEFLOW_TEST_FRACTION", self.test_fraction, 0.0, 0.5),
            ("TUNEFLOW_GATE_MAX_ERROR_RATE", self.gate_max_error_rate, 0.0, 1.0),
            ("TUNEFLOW_GATE_MIN_SCORE", self.gate_min_score, 0.0, 1.0),
            ("TUNEFLOW_GATE_MIN_DELTA", self.gate_min_delta, -1.0, 1.0),
            ("TUNEFLOW_ROLLOUT_MAX_ERROR_RATE", self.rollout_max_error_rate, 0.0, 1.0),
            ("TUNEFLOW_ROLLOUT_MAX_P95_RATIO", self.rollout_max_p95_ratio, 1.0, 100.0),
            ("TUNEFLOW_ROLLOUT_BAKE_MINUTES", self.rollout_bake_minutes, 0.0, 7 * 24 * 60.0),
        ):
            if not lo <= value <= hi:
                problems.append(f"{env}: expected a number between {lo} and {hi} (got {value})")
        for env, number in (
            ("TUNEFLOW_MAX_FILE_MB", self.max_file_mb),
            ("TUNEFLOW_MAX_LINE_KB", self.max_line_kb),
            ("TUNEFLOW_MIN_EXAMPLES", self.min_examples),
            ("TUNEFLOW_NUM_NODES", self.num_nodes),
            ("TUNEFLOW_REPORT_EXAMPLES", self.report_examples),
            ("TUNEFLOW_INSTANCE_COUNT", self.instance_count),
            ("TUNEFLOW_REQUEST_TIMEOUT_MS", self.request_timeout_ms),
            ("TUNEFLOW_MAX_REQUEST_KB", self.max_request_kb),
            ("TUNEFLOW_WEBHOOK_ATTEMPTS", self.webhook_attempts),
            ("TUNEFLOW_MAX_NODES", self.max_nodes),
            ("TUNEFLOW_MAX_INSTANCES", self.max_instances),
            ("TUNEFLOW_EVAL_MAX_ROWS", self.eval_max_rows),
            ("TUNEFLOW_EVAL_CONCURRENCY", self.eval_concurrency),
            ("TUNEFLOW_EVAL_MAX_NEW_TOKENS", self.eval_max_new_tokens),
            ("TUNEFLOW_ROLLOUT_MIN_REQUESTS", self.rollout_min_requests),
        ):
            if number < 1:
                problems.append(f"{env}: expected a positive integer (got {number})")
        if not 1 <= self.scoring_timeout_s <= 225:
            problems.append(
                "TUNEFLOW_SCORING_TIMEOUT_S: expected 1 to 225 seconds, below the Functions 230 s HTTP limit "
                f"(got {self.scoring_timeout_s:g})"
            )
        for env, amount in (
            ("TUNEFLOW_SCORING_RETRIES", self.scoring_retries),
            ("TUNEFLOW_ENDPOINT_CACHE_S", self.endpoint_cache_s),
            ("TUNEFLOW_IDLE_TEARDOWN_MINUTES", self.idle_teardown_minutes),
            ("TUNEFLOW_SWEEP_AFTER_MINUTES", self.sweep_after_minutes),
            ("TUNEFLOW_SWEEP_MAX", self.sweep_max),
            ("TUNEFLOW_SETTLE_SECONDS", self.settle_seconds),
        ):
            if amount < 0:
                problems.append(f"{env}: expected zero or more (got {amount:g})")
        for env, queue in (("TUNEFLOW_SCORE_QUEUE", self.score_queue), ("TUNEFLOW_WORK_QUEUE", self.work_queue)):
            if not _QUEUE_NAME.fullmatch(queue) or "--" in queue:
                problems.append(
                    f"{env}: expected a queue name, 3-63 lower-case letters, digits and single dashes (got {queue!r})"
                )
        if self.score_queue == self.work_queue:
            problems.append("TUNEFLOW_SCORE_QUEUE and TUNEFLOW_WORK_QUEUE must differ")
        if not 1 <= self.rollout_mirror_percent <= 50:
            problems.append(f"TUNEFLOW_ROLLOUT_MIRROR_PERCENT: expected 1 to 50 (got {self.rollout_mirror_percent})")
        problem = steps_problem(self.rollout_steps)
        if problem:
            problems.append(f"TUNEFLOW_ROLLOUT_STEPS: {problem}")
        if not 1 <= self.progress_seconds <= 300:
            problems.append(f"TUNEFLOW_PROGRESS_SECONDS: expected 1 to 300 seconds (got {self.progress_seconds:g})")
        if not 1 <= self.eval_chunk_seconds <= 600:
            problems.append(f"TUNEFLOW_EVAL_CHUNK_SECONDS: expected 1 to 600 seconds (got {self.eval_chunk_seconds:g})")
        if self.webhook_backoff_s <= 0:
            problems.append(f"TUNEFLOW_WEBHOOK_BACKOFF_S: expected a positive number (got {self.webhook_backoff_s:g})")
        if not _ENDPOINT_NAME.fullmatch(self.endpoint) or not 3 <= len(self.endpoint) <= 32:
            problems.append(
                "TUNEFLOW_ENDPOINT: expected 3-32 letters, digits and dashes, starting with a letter "
                f"(got {self.endpoint!r})"
            )
        if self.drop_container == self.output_container:
            problems.append("TUNEFLOW_DROP_CONTAINER and TUNEFLOW_OUTPUT_CONTAINER must differ")
        return problems


def steps_problem(steps: tuple[int, ...] | list[int]) -> str | None:
    """Why canary steps are not rising percentages ending at 100, or None."""
    if not steps or any(not 1 <= p <= 100 for p in steps) or list(steps) != sorted(set(steps)) or steps[-1] != 100:
        return f"expected rising percentages from 1 to 100, ending at 100, such as 10,50,100 (got {list(steps)})"
    return None


def _parse(hint: Any, raw: str) -> Any:
    """Parse ``raw`` as the annotated type; raise ValueError saying what was expected."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):  # Optional[X]
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _parse(inner, raw)
    if origin is Literal:
        choices = typing.get_args(hint)
        if raw not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return raw
    if hint is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if hint is int:
        return parse_int(raw)  # ranges are checked in _check, beside the other settings' ranges
    if hint is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError("expected a number") from None
    if origin is tuple:
        parts = tuple(part.strip() for part in raw.split(",") if part.strip())
        if typing.get_args(hint)[:1] == (int,):
            try:
                return tuple(parse_int(part) for part in parts)
            except ValueError:
                raise ValueError("expected comma-separated integers") from None
        return parts
    if origin is Mapping or hint is Mapping:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError("expected a JSON object") from None
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return types.MappingProxyType(value)
    return raw


def setting_docs() -> list[tuple[str, str, Any]]:
    """(environment variable, description, default) for every setting, in declaration order."""
    return [
        (f.metadata["env"], f.metadata["doc"], {} if f.default_factory is not MISSING else f.default)
        for f in fields(Settings)
    ]


@cache
def get_settings() -> Settings:
    """The process-wide settings, parsed on first use."""
    return Settings.from_env()
