"""Token usage a deployment did not report, counted with the base model's own tokenizer.

OpenAI clients read ``usage``. It comes from the deployment when the deployment reports it; otherwise, when
``TUNEFLOW_TOKENIZER_DIR`` names a directory with the model's ``tokenizer.json`` and
``tokenizer_config.json`` (the files every Hugging Face model ships; the chat template in the config or in
``chat_template.jinja``), it is counted: the prompt rendered
with the model's chat template as ``transformers`` renders it (Jinja in a sandbox, with a generation
prompt), then tokenised without added special tokens, as ``apply_chat_template(tokenize=True)`` does; the
completion is the answer's text tokenised the same way (the end-of-turn token the model generated is not
in the text and is not counted). Otherwise usage is omitted: never an estimate presented as a count.
``x-tuneflow-usage`` on the answer says which it is (``deployment`` or ``tokenizer``).

``tokenizers`` (Rust, no model weights) and ``jinja2`` load in tens of milliseconds, once per process,
and only when the setting is set.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class TokenCounter:
    """Counts a chat call's tokens with the tokenizer and chat template in ``directory``."""

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        template = config.get("chat_template")
        if template is None and (directory / "chat_template.jinja").is_file():  # where transformers 5 saves it
            template = (directory / "chat_template.jinja").read_text(encoding="utf-8")
        if isinstance(template, list):  # several named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if not isinstance(template, str):
            raise ValueError(f"{directory}/tokenizer_config.json has no chat_template")
        self._template = _compile(template)
        self._special = {name: _token_text(config.get(name)) for name in SPECIAL}
        self._lock = threading.Lock()  # a Tokenizer may be shared across threads, the template render too

    def prompt_tokens(self, messages: Sequence[Mapping[str, Any]]) -> int:
        rendered = self._template.render(messages=[dict(m) for m in messages], add_generation_prompt=True,
                                         **self._special)
        return self._count(rendered)

    def completion_tokens(self, text: str) -> int:
        return self._count(text)

    def usage(self, messages: Sequence[Mapping[str, Any]], completion: str) -> dict[str, int]:
        prompt, answer = self.prompt_tokens(messages), self.completion_tokens(completion)
        return {"prompt_tokens": prompt, "completion_tokens": answer, "total_tokens": prompt + answer}

    def _count(self, text: str) -> int:
        with self._lock:
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)


def load_counter(directory: str | None) -> TokenCounter | None:
    """The counter for ``TUNEFLOW_TOKENIZER_DIR``, or None (unset, or unreadable: said once in the log)."""
    if not directory:
        return None
    try:
        return TokenCounter(Path(directory))
    except Exception as exc:  # a broken tokenizer must not break scoring (tokenizers raises its own types)
        log.warning("TUNEFLOW_TOKENIZER_DIR=%s: cannot load a tokenizer (%s: %s); usage is reported only when "
                    "the deployment reports it", directory, type(exc).__name__, exc)
        return None


def _token_text(value: Any) -> str:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken-like object."""
    if isinstance(value, Mapping):
        return str(value.get("content") or "")
    return value if isinstance(value, str) else ""


def _compile(template: str) -> Any:
    """The template in a sandbox, with the globals and filters transformers gives chat templates."""
    import jinja2.ext
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)
