"""tuneflow's command line: ``python -m cli <command> ...``.

Each command module exposes ``register(subparsers)``, which adds its subparser and sets
``handler`` (``args -> exit code``). ``validate`` is registered from this module; other commands
(upload, status, score, teardown, prepare) live in their own modules, listed in
``COMMAND_MODULES``. Registration must stay light — a module imports what its command needs
inside the handler — so ``--help`` and every command start fast.

Exit codes: 0 success (a valid dataset), 1 the command ran and said no (an invalid dataset),
2 usage or I/O error (message on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.integers import argument

COMMAND_MODULES: tuple[str, ...] = (
    "cli.prepare",
    "cli.upload",
    "cli.status",
    "cli.endpoint",
)

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT
_FORMATS = ".jsonl, .ndjson, .json or .parquet"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cli",
        description="tuneflow: fine-tune chat models from a dataset dropped in Blob Storage.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `python -m cli <command> --help` for a command's options and examples.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    register(subparsers)  # validate, below
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = handler(args)
    except KeyboardInterrupt:  # worker processes get the same SIGINT and stop with us
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def fail(message: str) -> int:
    """Report a usage or I/O problem on stderr; the exit code for it."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


# -- validate ------------------------------------------------------------------------------------
_VALIDATE_EPILOG = """\
Formats: .jsonl/.ndjson (one conversation per line), .json (an array of conversations),
.parquet (ultrachat_200k's native format). Each row holds `messages`: a list of
{"role": "system"|"user"|"assistant", "content": "..."}; `prompt` and `prompt_id` are kept.

Exit codes: 0 valid, 1 invalid, 2 usage or I/O error.

Examples:
  python -m cli validate data/train.jsonl
  python -m cli validate train.parquet --test test.parquet --json > report.json
  python -m cli validate chats.json --policy drop-invalid --max-seq-length 4096
"""


def register(subparsers: Any) -> None:
    """Add the ``validate`` command."""
    parser = subparsers.add_parser(
        "validate",
        help="check a chat dataset locally, exactly as ingest will",
        description="Validate a chat fine-tuning dataset in one streaming pass (the same checks, "
        "statistics and verdict as the ingest function) and print a summary or the JSON report.",
        epilog=_VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", type=Path, help=f"the training dataset ({_FORMATS})")
    parser.add_argument("--test", type=Path, metavar="PATH", help="a test dataset (default: hash-split the train file)")
    parser.add_argument("--json", action="store_true", help="print the full JSON report instead of the summary")
    parser.add_argument(
        "--policy",
        choices=("strict", "drop-invalid"),
        default="strict",
        help="strict: any error rejects the dataset (default); drop-invalid: drop bad rows if few enough",
    )
    parser.add_argument(
        "--max-seq-length", type=_positive, default=2048, metavar="N", help="token budget per example (default 2048)"
    )
    parser.add_argument(
        "--min-examples", type=_positive, default=10, metavar="N", help="fewest valid examples accepted (default 10)"
    )
    parser.add_argument(
        "--base-model",
        default="Phi-4-mini-instruct",
        metavar="NAME",
        help="whose chat-template tokens are refused in content (default Phi-4-mini-instruct, as the app)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="processes for a large JSONL file (default: one per core; 1: this process only); "
        "the report is the same either way",
    )
    parser.set_defaults(handler=_validate)


_positive = argument(lo=1)


def _validate(args: argparse.Namespace) -> int:
    from shared.chat_templates import reserved_tokens
    from shared.validation import LocalFile, ValidationOptions, validate_dataset

    sources = []
    for path in (args.path, args.test):
        if path is None:
            continue
        if not path.exists():
            return fail(f"{path}: no such file")
        if not path.is_file():
            return fail(f"{path}: not a file (expected a dataset file: {_FORMATS})")
        try:
            sources.append(LocalFile.at(path))
        except ValueError:
            return fail(f"{path}: unknown dataset format '{path.suffix}' (expected {_FORMATS})")
    options = ValidationOptions(
        policy=args.policy,
        max_seq_length=args.max_seq_length,
        min_examples=args.min_examples,
        reserved_tokens=reserved_tokens(args.base_model) or (),
    )
    try:
        report = validate_dataset(sources[0], sources[1] if len(sources) > 1 else None, options, workers=args.workers)
    except OSError as exc:
        return fail(f"cannot read the dataset: {exc}")
    emit(report.to_json().decode() if args.json else report.summary())
    return EXIT_OK if report.valid else EXIT_INVALID


def emit(text: str) -> None:
    """Print to stdout; a reader that went away (``| head``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is quiet too

