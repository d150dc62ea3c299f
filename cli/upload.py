"""``python -m cli upload``: put a dataset into the drop container, where ingest picks it up.

A file becomes one dataset (ingest holds out its test split); a folder holding ``train.*`` and
``test.*`` becomes ``<name>/train.*`` + ``<name>/test.*``, one dataset that ingest submits once both
have arrived. Files go up in blocks (``--block-size``), several at a time (``--max-concurrency``),
with a progress bar. Anything ingest would ignore is refused before a byte is sent.
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

    from shared.settings import Settings

KiB, MiB = 1024, 1024 * 1024
DEFAULT_BLOCK_SIZE = 8 * MiB
DEFAULT_CONCURRENCY = 4
MAX_BLOCK_SIZE = 4000 * MiB  # the service's limit for one block
_FORMATS = ".jsonl, .ndjson, .json or .parquet"
_CONTENT_TYPES = {"jsonl": "application/jsonl", "json": "application/json", "parquet": "application/vnd.apache.parquet"}

_EPILOG = """\
A file is uploaded as one dataset (ingest holds out TUNEFLOW_TEST_FRACTION of it as the test split).
A folder must hold train.<ext> and test.<ext>: they go up as <name>/train.<ext> and <name>/test.<ext>,
one dataset submitted once both have arrived. Storage comes from TUNEFLOW_STORAGE_CONNECTION (or
TUNEFLOW_STORAGE_ACCOUNT_URL with your Azure login); the container from TUNEFLOW_DROP_CONTAINER.

Exit codes: 0 uploaded, 1 --validate found the dataset invalid (nothing uploaded), 2 usage or I/O error.

Examples:
  python -m cli upload data/train.jsonl
  python -m cli upload chats.parquet --name team-a/chats.parquet --validate
  python -m cli upload ultrachat_5pct/ --block-size 16M --max-concurrency 8
"""



@dataclass(frozen=True)
class PlannedBlob:
    path: Path
    blob_name: str


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
    parser.add_argument("path", type=Path, help=f"a dataset file ({_FORMATS}) or a folder with train.* and test.*")
    parser.add_argument(
        "--name", metavar="BLOB_NAME", help="blob name (a file) or folder name (a folder); default: the local name"
    )
    parser.add_argument("--container", metavar="NAME", help="target container (default: TUNEFLOW_DROP_CONTAINER)")
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


def plan(path: Path, name: str | None = None) -> list[PlannedBlob]:
    """The blobs an upload of ``path`` creates; ``UploadRefused`` when ingest would not take them."""
    from shared.validation import detect_format

    if not path.exists():
        raise UploadRefused(f"{path}: no such file or folder")
    if path.is_dir():
        return _plan_folder(path, name)
    blob_name = _clean(name) if name else path.name
    if detect_format(path.name) is None:
        raise UploadRefused(f"{path}: not a dataset file (expected {_FORMATS}); ingest would ignore it")
    if detect_format(blob_name) is None:
        raise UploadRefused(f"--name {blob_name!r} must end in {_FORMATS} (ingest ignores other blobs), "
                            f"e.g. {blob_name}{path.suffix.lower()}")
    if detect_format(blob_name) != detect_format(path.name):
        raise UploadRefused(f"--name {blob_name!r} names another format than {path.name}: "
                            f"keep the {path.suffix} extension")
    return [PlannedBlob(path, blob_name)]


def _plan_folder(folder: Path, name: str | None) -> list[PlannedBlob]:
    from shared.validation import detect_format

    prefix = _clean(name) if name else folder.resolve().name
    if detect_format(prefix) is not None and name:
        raise UploadRefused(f"--name {prefix!r}: for a folder, give the folder name (without an extension)")
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
            progress_hook=hook,
        )


# -- the command ----------------------------------------------------------------------------------


def validate_local(settings: Settings, planned: Sequence[PlannedBlob]) -> tuple[bool, str]:
    """Run the ingest validator on the local files: (valid, summary)."""
    from shared.ingest import validation_options
    from shared.validation import LocalFile, validate_dataset

    files = [LocalFile.at(item.path) for item in planned]
    report = validate_dataset(files[0], files[1] if len(files) > 1 else None, validation_options(settings))
    return report.valid, report.summary()


def _upload(args: argparse.Namespace) -> int:
    from shared.errors import SettingsError
    from shared.settings import Settings

    try:
        planned = plan(args.path, args.name)
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
