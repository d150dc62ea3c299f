"""``python -m cli upload``: put a dataset into the drop container, where ingest picks it up.

A file becomes one dataset (ingest holds out its test split); ``--manifest`` goes with it as its blob
metadata. A folder becomes ``<name>/…``: its ``tuneflow.json`` (or ``--manifest``) goes up first, then the
files it names (or ``train.*`` and ``test.*``), one dataset that ingest reads once the folder has settled.
A manifest is checked here as ingest will check its keys, and files go up in blocks (``--block-size``),
several at a time (``--max-concurrency``), with a progress bar. Anything ingest would ignore or refuse is
refused before a byte is sent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.main import EXIT_INVALID, EXIT_OK, fail
from shared.errors import UploadRefused
from shared.integers import argument

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient

    from shared.manifest import Manifest
    from shared.settings import Settings

KiB, MiB = 1024, 1024 * 1024
DEFAULT_BLOCK_SIZE = 8 * MiB
DEFAULT_CONCURRENCY = 4
MAX_BLOCK_SIZE = 4000 * MiB  # the service's limit for one block
_FORMATS = ".jsonl, .ndjson, .json or .parquet"
_CONTENT_TYPES = {"jsonl": "application/jsonl", "json": "application/json", "parquet": "application/vnd.apache.parquet"}

_EPILOG = """\
A file is uploaded as one dataset (ingest holds out TUNEFLOW_TEST_FRACTION of it as the test split);
with --manifest, the manifest travels in its blob metadata (tuneflow_manifest). A folder holds a
tuneflow.json and the files it names, or train.<ext> and test.<ext>: the manifest goes up first, then the
data, as <name>/<file>; the run starts once the folder has been quiet for TUNEFLOW_SETTLE_SECONDS.
Storage comes from TUNEFLOW_STORAGE_CONNECTION (or TUNEFLOW_STORAGE_ACCOUNT_URL with your Azure login);
the container from TUNEFLOW_DROP_CONTAINER.

Exit codes: 0 uploaded, 1 --validate found the dataset invalid (nothing uploaded), 2 usage or I/O error.

Examples:
  python -m cli upload data/train.jsonl
  python -m cli upload chats.parquet --name team-a/chats.parquet --validate
  python -m cli upload ultrachat_5pct/ --block-size 16M --max-concurrency 8
  python -m cli upload support-chats/            # holds tuneflow.json + the files it names
  python -m cli upload chats.jsonl --manifest tuneflow.json
"""



@dataclass(frozen=True)
class PlannedBlob:
    path: Path
    blob_name: str
    metadata: dict[str, str] | None = None


MAX_METADATA_BYTES = 8 * KiB  # the service's limit for all of a blob's metadata

def register(subparsers: Any) -> None:
    """Add the ``upload`` command."""
    parser = subparsers.add_parser(
        "upload",
        help="upload a dataset file or train/test folder to the drop container",
        description="Upload a dataset to the drop container (chunked, in parallel, with a progress bar);\n"
        "its arrival starts a run.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", type=Path, help=f"a dataset file ({_FORMATS}), or a folder with a tuneflow.json or "
                        "train.* and test.*")
    parser.add_argument(
        "--name", metavar="BLOB_NAME", help="blob name (a file) or folder name (a folder); default: the local name"
    )
    parser.add_argument("--container", metavar="NAME", help="target container (default: TUNEFLOW_DROP_CONTAINER)")
    parser.add_argument("--manifest", type=Path, metavar="FILE",
                        help="a tuneflow.json for this dataset: blob metadata of a file, or the folder's manifest")
    parser.add_argument("--validate", action="store_true",
                        help="validate locally first, as ingest will; upload only if valid")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a blob of the same name (a new run if the bytes differ)")
    parser.add_argument(
        "--block-size", type=byte_size, default=DEFAULT_BLOCK_SIZE, metavar="SIZE",
        help="block size, e.g. 4M or 512K (default 8M); larger files go up block by block",
    )
    parser.add_argument(
        "--max-concurrency", type=_positive, default=DEFAULT_CONCURRENCY, metavar="N",
        help=f"blocks in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_upload)


def byte_size(text: str) -> int:
    """``"8M"`` → bytes. Accepts a plain number of bytes or a K/M/G suffix (binary units)."""
    units = {"K": KiB, "M": MiB, "G": 1024 * MiB}
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    factor = units.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 4M or 512K, got {text!r}") from None
    if not KiB <= value <= MAX_BLOCK_SIZE:
        raise argparse.ArgumentTypeError(f"expected a size from 1K to 4000M, got {text!r}")
    return value


_positive = argument(lo=1)


# -- planning: what goes where, refused up front ---------------------------------------------------


def plan(path: Path, name: str | None = None, manifest: Path | None = None) -> list[PlannedBlob]:
    """The blobs an upload of ``path`` creates, in order; ``UploadRefused`` when ingest would not take them."""
    from shared.validation import detect_format

    if not path.exists():
        raise UploadRefused(f"{path}: no such file or folder")
    if path.is_dir():
        return _plan_folder(path, name, manifest)
    blob_name = _clean(name) if name else path.name
    if detect_format(path.name) is None:
        raise UploadRefused(f"{path}: not a dataset file (expected {_FORMATS}); ingest would ignore it")
    if detect_format(blob_name) is None:
        raise UploadRefused(f"--name {blob_name!r} must end in {_FORMATS} (ingest ignores other blobs), "
                            f"e.g. {blob_name}{path.suffix.lower()}")
    if detect_format(blob_name) != detect_format(path.name):
        raise UploadRefused(f"--name {blob_name!r} names another format than {path.name}: "
                            f"keep the {path.suffix} extension")
    if manifest is None:
        return [PlannedBlob(path, blob_name)]
    parsed = read_manifest(manifest)
    named = [key for key in ("train", "test", "source") if key in parsed.keys]
    if named:
        raise UploadRefused(f"{manifest}: {', '.join(named)}: a single file's manifest cannot name other data "
                            "(the file is the data); upload a folder holding the manifest instead")
    import json

    text = json.dumps(json.loads(manifest.read_bytes()), separators=(",", ":"), ensure_ascii=True)
    if len(text) > MAX_METADATA_BYTES - 64:
        raise UploadRefused(f"{manifest}: {len(text)} bytes is too large for blob metadata (at most about 8 KiB); "
                            "upload a folder holding the manifest instead")
    from shared.manifest import METADATA_KEY

    return [PlannedBlob(path, blob_name, {METADATA_KEY: text})]


def read_manifest(path: Path) -> Manifest:
    from shared.errors import ManifestError
    from shared.manifest import parse_manifest

    try:
        return parse_manifest(path.read_bytes(), str(path))
    except OSError as exc:
        raise UploadRefused(f"{path}: cannot read the manifest: {exc}") from None
    except ManifestError as exc:
        raise UploadRefused(f"{path}: not uploaded, the manifest has {len(exc.problems)} problem"
                            f"{'s' if len(exc.problems) > 1 else ''}:\n  " + "\n  ".join(exc.problems)) from None


def _plan_folder(folder: Path, name: str | None, manifest: Path | None = None) -> list[PlannedBlob]:
    from shared.manifest import MANIFEST_NAME
    from shared.validation import detect_format

    prefix = _clean(name) if name else folder.resolve().name
    if detect_format(prefix) is not None and name:
        raise UploadRefused(f"--name {prefix!r}: for a folder, give the folder name (without an extension)")
    manifest = manifest or (folder / MANIFEST_NAME if (folder / MANIFEST_NAME).is_file() else None)
    if manifest is not None:
        return _plan_manifest_folder(folder, prefix, manifest)
    found: dict[str, Path] = {}
    others: list[str] = []
    for child in sorted(folder.iterdir()):
        if not child.is_file() or detect_format(child.name) is None:
            continue
        stem = child.name.rsplit(".", 1)[0].lower()
        if stem in ("train", "test") and stem not in found:
            found[stem] = child
        else:
            others.append(child.name)
    if others:
        raise UploadRefused(f"{folder}: holds other dataset files ({', '.join(others)}); ingest would take each as a "
                      "dataset of its own. A folder must hold only train.<ext> and test.<ext>")
    missing = [stem for stem in ("train", "test") if stem not in found]
    if missing:
        raise UploadRefused(f"{folder}: no {' or '.join(m + '.*' for m in missing)} file; a dataset folder holds "
                      f"train.<ext> and test.<ext> ({_FORMATS}). Upload a single file instead to have its test "
                      "split held out")
    return [PlannedBlob(found[s], f"{prefix}/{found[s].name}") for s in ("train", "test")]


def _plan_manifest_folder(folder: Path, prefix: str, manifest: Path) -> list[PlannedBlob]:
    """The manifest first (ingest waits for the files it names), then those files."""
    from shared.manifest import MANIFEST_NAME

    parsed = read_manifest(manifest)
    first = PlannedBlob(manifest, f"{prefix}/{MANIFEST_NAME}")
    if parsed.source is not None:
        return [first]  # the function app prepares the data itself
    from shared.validation import detect_format

    stems = {p.name.rsplit(".", 1)[0].lower(): p.name for p in sorted(folder.iterdir(), reverse=True)
             if p.is_file() and detect_format(p.name) is not None}  # the first by name wins, as in ingest
    names = [parsed.train or stems.get("train"), parsed.test if parsed.train else stems.get("test")]
    files = [n for n in names if n is not None]
    if not files:
        raise UploadRefused(f"{manifest}: names no train file and {folder} has no train.* file")
    missing = [n for n in files if not (folder / n).is_file()]
    if missing:
        raise UploadRefused(f"{folder}: no {', '.join(missing)} ({manifest} names it)")
    return [first, *(PlannedBlob(folder / n, f"{prefix}/{n}") for n in files)]


def _clean(name: str) -> str:
    cleaned = name.strip().strip("/")
    if not cleaned or len(cleaned) > 1024 or cleaned.endswith(".") or "//" in cleaned or "\\" in cleaned:
        raise UploadRefused(f"--name {name!r} is not a usable blob name")
    return cleaned


# -- uploading ---------------------------------------------------------------------------------------


def upload_blobs(
    settings: Settings,
    planned: Sequence[PlannedBlob],
    container: str | None = None,
    *,
    overwrite: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    max_concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool = True,
) -> list[str]:
    """Upload each planned file; the blob URLs. Raises ``UploadRefused`` on a name clash or a missing container."""
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    from shared.connections import Connections
    from shared.storage import ensure_container

    service = Connections(settings).blob_service()
    target = container or settings.drop_container
    if target == settings.drop_container:
        ensure_container(service, target)  # the app's own container: created on first use, as ingest would
    urls = []
    for item in planned:
        blob = _blob_client(service, target, item.blob_name, block_size)
        try:
            _send(blob, item, overwrite=overwrite, max_concurrency=max_concurrency, progress=progress)
        except ResourceExistsError:
            raise UploadRefused(f"{target}/{item.blob_name} already exists; --overwrite replaces it (different bytes "
                          "start a new run, the same bytes meet the existing one)") from None
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise UploadRefused(f"container {target!r} does not exist") from None
            raise
        urls.append(blob.url)
    return urls


def _blob_client(service: BlobServiceClient, container: str, blob_name: str, block_size: int) -> BlobClient:
    """A client for one blob with this upload's block size (the pooled service client keeps its own)."""
    from azure.storage.blob import BlobClient

    return BlobClient(
        service.url,
        container_name=container,
        blob_name=blob_name,
        credential=service.credential,
        max_block_size=block_size,
        max_single_put_size=block_size,  # anything larger than one block goes up block by block
    )


def _send(blob: BlobClient, item: PlannedBlob, *, overwrite: bool, max_concurrency: int, progress: bool) -> None:
    from azure.storage.blob import ContentSettings
    from tqdm import tqdm

    from shared.validation import detect_format

    fmt = detect_format(item.path.name)
    size = item.path.stat().st_size
    with (
        item.path.open("rb") as data,
        tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=item.blob_name,
             disable=None if progress else True, file=sys.stderr, leave=True) as bar,
    ):

        def hook(current: int, total: int | None) -> None:
            bar.update(current - bar.n)

        blob.upload_blob(
            data,
            length=size,
            overwrite=overwrite,
            max_concurrency=max_concurrency,
            content_settings=ContentSettings(content_type=_CONTENT_TYPES.get(fmt or "", "application/octet-stream")),
            metadata=item.metadata,
            progress_hook=hook,
        )


# -- the command ----------------------------------------------------------------------------------


def validate_local(settings: Settings, planned: Sequence[PlannedBlob]) -> tuple[bool, str]:
    """Run the ingest validator on the local files, with what the manifest changes (its base model's reserved
    tokens, its ``max_seq_length``): (valid, summary)."""
    from shared.ingest import validation_options
    from shared.manifest import METADATA_KEY, parse_manifest, run_config, settings_for

    manifest = None
    for item in planned:
        if item.blob_name.endswith("/tuneflow.json"):
            manifest = parse_manifest(item.path.read_bytes(), str(item.path))
        elif item.metadata and METADATA_KEY in item.metadata:
            manifest = parse_manifest(item.metadata[METADATA_KEY], str(item.path))
    if manifest is not None:
        settings = settings_for(settings, run_config(settings, manifest))
    from shared.manifest import MANIFEST_NAME
    from shared.validation import LocalFile, validate_dataset

    files = [LocalFile.at(item.path) for item in planned if not item.blob_name.endswith("/" + MANIFEST_NAME)]
    if not files:
        return True, "nothing to validate here: the manifest's source is prepared by the function app"
    report = validate_dataset(files[0], files[1] if len(files) > 1 else None,
                              validation_options(settings, manifest.finetune if manifest else None))
    return report.valid, report.summary()


def _upload(args: argparse.Namespace) -> int:
    from shared.errors import SettingsError
    from shared.settings import Settings

    try:
        planned = plan(args.path, args.name, args.manifest)
    except UploadRefused as exc:
        return fail(str(exc))
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return fail(str(exc))
    if args.validate:
        try:
            valid, summary = validate_local(settings, planned)
        except OSError as exc:
            return fail(f"cannot read the dataset: {exc}")
        print(summary)
        if not valid:
            print("not uploaded: the dataset is invalid", file=sys.stderr)
            return EXIT_INVALID
    container = args.container or settings.drop_container
    try:
        upload_blobs(settings, planned, container, overwrite=args.overwrite, block_size=args.block_size,
                     max_concurrency=args.max_concurrency, progress=not args.quiet)
    except UploadRefused as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot read {args.path}: {exc}")
    except Exception as exc:  # azure.core errors: say what the service said, without a traceback
        return fail(f"upload failed: {_describe(exc)}")
    for item in planned:
        print(f"uploaded {item.path} → {container}/{item.blob_name} ({item.path.stat().st_size} bytes)")
    print("follow the run with: python -m cli status --watch")
    return EXIT_OK


def _describe(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return message.splitlines()[0]
