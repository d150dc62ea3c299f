"""The manifest's keys, parsed and checked on their own: every problem is reported with its key path.

A manifest is a JSON object; every key is optional (the app settings are the defaults). Problems are
collected, not raised one at a time, so one upload tells the user everything to fix:
``finetune.learning_rate: expected a number, got "fast"``; ``compte: unknown key (did you mean 'compute'?)``;
malformed JSON is reported with its line and column. Checks that need Azure (does the registry have
the model, does the component take the parameter, is the VM size allowed) run later, at ingest.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import ManifestError

if TYPE_CHECKING:
    from shared.sources import SourceSpec

MANIFEST_NAME = "tuneflow.json"  # beside the data in a dataset folder
METADATA_KEY = "tuneflow_manifest"  # the same JSON on a single-file drop's blob metadata
MAX_MANIFEST_BYTES = 64 * 1024
MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE = 50, 128, 256
RESERVED_TAG_PREFIX = "tuneflow"  # tags tuneflow writes itself (run id, dataset, base model, ...)
Deploy = Literal["auto", "never"]

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_REGISTRY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,32}")
_COMPUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,31}")
_VM_SIZE = re.compile(r"Standard_[A-Za-z0-9_]{1,60}", re.IGNORECASE)
_ENDPOINT = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]{1,30}[a-zA-Z0-9])")
_SUFFIX = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
_FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest. ``keys`` are the top-level keys it set (the rest come from the app settings)."""

    train: str | None = None
    test: str | None = None
    base_model: str | None = None
    base_model_version: str | None = None
    registry: str | None = None
    finetune: Mapping[str, Any] = field(default_factory=dict)
    compute: str | None = None
    instance_type: str | None = None
    num_nodes: int | None = None
    model_name: str | None = None
    suffix: str | None = None
    endpoint: str | None = None
    deployment_instance_type: str | None = None
    deployment_instance_count: int | None = None
    deploy: Deploy = "auto"
    idle_teardown_minutes: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    notify_url: str | None = None
    source: SourceSpec | None = None
    eval_max_rows: int | None = None
    eval_compare_base: bool | None = None
    gate: Mapping[str, Any] = field(default_factory=dict)  # gate_* run fields by their manifest names
    rollout: Mapping[str, Any] = field(default_factory=dict)  # rollout_* run fields by their manifest names
    keys: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.keys


Check = Callable[[Any, str, list[str]], Any]


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(pattern: re.Pattern[str] | None, what: str) -> Check:
    def check(value: Any, path: str, problems: list[str]) -> str | None:
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string ({what}), got {_show(value)}")
        elif pattern is not None and not pattern.fullmatch(value):
            problems.append(f"{path}: expected {what}, got {_show(value)}")
        else:
            return value
        return None

    return check


def _integer(lo: int, hi: int) -> Check:
    def check(value: Any, path: str, problems: list[str]) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected an integer, got {_show(value)}")
        elif not lo <= value <= hi:
            problems.append(f"{path}: expected an integer from {lo} to {hi}, got {value}")
        else:
            return value
        return None

    return check


def _number(lo: float, hi: float) -> Check:
    def check(value: Any, path: str, problems: list[str]) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: expected a number, got {_show(value)}")
        elif not lo <= value <= hi:
            problems.append(f"{path}: expected a number from {lo:g} to {hi:g}, got {value:g}")
        else:
            return float(value)
        return None

    return check


def _version(value: Any, path: str, problems: list[str]) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)  # registry versions are strings, but "version": 3 means what it says
    version: str | None = _string(_VERSION, "a model version such as \"3\"")(value, path, problems)
    return version


def _file(value: Any, path: str, problems: list[str]) -> str | None:
    name: str | None = _string(None, "a file name")(value, path, problems)
    if name is None:
        return None
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        problems.append(f"{path}: expected the name of a file in the dataset folder (no sub-folders), "
                        f"got {_show(value)}")
    elif not name.lower().endswith(_FILE_SUFFIXES):
        problems.append(f"{path}: expected a .jsonl, .json or .parquet file, got {_show(value)}")
    elif name == MANIFEST_NAME:
        problems.append(f"{path}: the manifest itself is not a dataset file")
    else:
        return name
    return None


def _deploy(value: Any, path: str, problems: list[str]) -> str | None:
    if value not in ("auto", "never"):
        problems.append(f"{path}: expected \"auto\" or \"never\", got {_show(value)}")
        return None
    return str(value)


def _url(value: Any, path: str, problems: list[str]) -> str | None:
    url = _string(None, "an https URL")(value, path, problems)
    if url is None:
        return None
    if len(url) > 2048 or not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url):
        problems.append(f"{path}: expected an http(s) URL, got {_show(value)}")
        return None
    return str(url)


def _tags(value: Any, path: str, problems: list[str]) -> dict[str, str] | None:
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object of string tags, got {_show(value)}")
        return None
    if len(value) > MAX_TAGS:
        problems.append(f"{path}: at most {MAX_TAGS} tags, got {len(value)}")
    kept: dict[str, str] = {}
    for key, tag in value.items():
        where = f"{path}.{key}"
        if not 0 < len(key) <= MAX_TAG_KEY or any(c in key for c in "<>%&\\?/"):
            problems.append(f"{where}: a tag name is 1-{MAX_TAG_KEY} characters without <>%&\\?/")
        elif key.lower().startswith(RESERVED_TAG_PREFIX):
            problems.append(f"{where}: tags starting with {RESERVED_TAG_PREFIX!r} are tuneflow's own")
        elif not isinstance(tag, str):
            problems.append(f"{where}: expected a string, got {_show(tag)}")
        elif len(tag) > MAX_TAG_VALUE:
            problems.append(f"{where}: at most {MAX_TAG_VALUE} characters, got {len(tag)}")
        else:
            kept[key] = tag
    return kept


def _finetune(value: Any, path: str, problems: list[str]) -> dict[str, Any] | None:
    """Names and values are checked against the live component at ingest; here only their shape."""
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object of pipeline inputs, got {_show(value)}")
        return None
    kept = {}
    for name, param in value.items():
        if isinstance(param, dict | list) or param is None:
            problems.append(f"{path}.{name}: expected a string, number or boolean, got {_show(param)}")
        else:
            kept[name] = param
    return kept


def _deployment(value: Any, path: str, problems: list[str]) -> dict[str, Any] | None:
    return _object(value, path, problems, {
        "instance_type": _string(_VM_SIZE, "an Azure VM size such as \"Standard_NC24ads_A100_v4\""),
        "instance_count": _integer(1, 100),
    })


def _boolean(value: Any, path: str, problems: list[str]) -> bool | None:
    if not isinstance(value, bool):
        problems.append(f"{path}: expected true or false, got {_show(value)}")
        return None
    return value


def _choice(*choices: str) -> Check:
    def check(value: Any, path: str, problems: list[str]) -> str | None:
        if value not in choices:
            problems.append(f"{path}: expected one of {', '.join(repr(c) for c in choices)}, got {_show(value)}")
            return None
        return str(value)

    return check


def _eval(value: Any, path: str, problems: list[str]) -> dict[str, Any] | None:
    return _object(value, path, problems, {"max_rows": _integer(1, 5000), "compare_base": _boolean})


def _gate(value: Any, path: str, problems: list[str]) -> dict[str, Any] | None:
    return _object(value, path, problems, {
        "enabled": _boolean, "metric": _choice("token_f1", "exact_match", "rouge_l"),
        "min_delta": _number(-1, 1), "max_error_rate": _number(0, 1), "min_score": _number(0, 1),
    })


def _steps(value: Any, path: str, problems: list[str]) -> list[int] | None:
    from shared.settings import steps_problem

    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        problems.append(f"{path}: expected a list of integer percentages such as [10, 50, 100], got {_show(value)}")
        return None
    problem = steps_problem(value)
    if problem:
        problems.append(f"{path}: {problem}")
        return None
    return list(value)


def _rollout(value: Any, path: str, problems: list[str]) -> dict[str, Any] | None:
    return _object(value, path, problems, {
        "strategy": _choice("immediate", "canary", "mirror"), "steps": _steps, "mirror_percent": _integer(1, 50),
        "bake_minutes": _number(0, 7 * 24 * 60),
        "max_error_rate": _number(0, 1), "max_p95_ratio": _number(1, 100), "min_requests": _integer(1, 100_000),
    })


def _source(value: Any, path: str, problems: list[str]) -> Any:
    from shared.sources import parse_source

    spec, found = parse_source(value, path)
    problems.extend(found)
    return spec


KEYS: Mapping[str, Check] = {
    "$schema": _string(None, "a JSON Schema URL"),
    "train": _file,
    "test": _file,
    "base_model": _string(_MODEL_NAME, "a registry model name such as \"Phi-4-mini-instruct\""),
    "base_model_version": _version,
    "registry": _string(_REGISTRY, "a registry name such as \"azureml\""),
    "finetune": _finetune,
    "compute": _string(_COMPUTE, "a compute cluster name or \"serverless\""),
    "instance_type": _string(_VM_SIZE, "an Azure VM size such as \"Standard_NC24ads_A100_v4\""),
    "num_nodes": _integer(1, 64),
    "model_name": _string(_MODEL_NAME, "a model name: letters, digits, '.', '_' and '-'"),
    "suffix": _string(_SUFFIX, "1-40 lower-case letters, digits and dashes"),
    "endpoint": _string(_ENDPOINT, "3-32 letters, digits and dashes, starting with a letter"),
    "deployment": _deployment,
    "deploy": _deploy,
    "idle_teardown_minutes": _number(0, 60 * 24 * 365),
    "tags": _tags,
    "notify_url": _url,
    "source": _source,
    "eval": _eval,
    "gate": _gate,
    "rollout": _rollout,
}


def _object(value: Any, path: str, problems: list[str], keys: Mapping[str, Check]) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        problems.append(f"{path}: expected an object, got {_show(value)}")
        return None
    checked: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        check = keys.get(key)
        if check is None:
            close = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
            problems.append(f"{where}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else
                                                      f"; known keys: {', '.join(k for k in keys if k != '$schema')}"))
            continue
        result = check(item, where, problems)
        if result is not None:
            checked[key] = result
    return checked


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


def load_json(text: bytes | str, where: str) -> Any:
    """The manifest's JSON, or a ManifestError with the line and column of what is wrong."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{where}: a manifest is at most {MAX_MANIFEST_BYTES // 1024} KiB, got {len(raw)} bytes",
                            [f"manifest: larger than {MAX_MANIFEST_BYTES // 1024} KiB"])
    try:
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = f"manifest: not UTF-8 text (byte {exc.start})"
        raise ManifestError(f"{where}: {problem}", [problem]) from None
    try:
        return json.loads(decoded, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        problem = f"manifest: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise ManifestError(f"{where}: {problem}", [problem]) from None
    except (ValueError, RecursionError) as exc:
        problem = f"manifest: {exc}" if not isinstance(exc, RecursionError) else "manifest: nested too deeply"
        raise ManifestError(f"{where}: {problem}", [problem]) from None


def parse_manifest(text: bytes | str, where: str = MANIFEST_NAME) -> Manifest:
    """Parse and check a manifest; a ManifestError lists every problem with its key path."""
    problems: list[str] = []
    loaded = load_json(text, where)
    if not isinstance(loaded, dict):
        problem = f"manifest: expected a JSON object, got {_show(loaded)}"
        raise ManifestError(f"{where}: {problem}", [problem])
    checked = _object(loaded, "", problems, KEYS) or {}
    if "model_name" in checked and "suffix" in checked:
        problems.append("suffix: give model_name or suffix, not both")
    if "source" in checked and ("train" in checked or "test" in checked):
        problems.append("source: a manifest names its data with train/test files or a source, not both")
    if "test" in checked and "train" not in checked and "source" not in checked:
        problems.append("test: a test file needs a train file beside it")
    if problems:
        raise ManifestError(f"{where}: {len(problems)} problem{'s' if len(problems) > 1 else ''}: "
                            + "; ".join(problems), problems)
    deployment = checked.get("deployment") or {}
    return Manifest(
        train=checked.get("train"), test=checked.get("test"), base_model=checked.get("base_model"),
        base_model_version=checked.get("base_model_version"), registry=checked.get("registry"),
        finetune=checked.get("finetune") or {}, compute=checked.get("compute"),
        instance_type=checked.get("instance_type"), num_nodes=checked.get("num_nodes"),
        model_name=checked.get("model_name"), suffix=checked.get("suffix"), endpoint=checked.get("endpoint"),
        deployment_instance_type=deployment.get("instance_type"),
        deployment_instance_count=deployment.get("instance_count"), deploy=checked.get("deploy", "auto"),
        idle_teardown_minutes=checked.get("idle_teardown_minutes"), tags=checked.get("tags") or {},
        notify_url=checked.get("notify_url"), source=checked.get("source"),
        eval_max_rows=(checked.get("eval") or {}).get("max_rows"),
        eval_compare_base=(checked.get("eval") or {}).get("compare_base"), gate=checked.get("gate") or {},
        rollout=checked.get("rollout") or {},
        keys=frozenset(k for k in checked if k != "$schema"),
    )
