"""Text generation for one deployment: the MLflow model loaded once, replies generated on demand."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator import mlflow_folder
from emulator.basemodel import CHAT_TEMPLATE
from emulator.scoring.contract import BadRequest, GenerationParams, ScoringInput


class DeadlineExceeded(Exception):
    pass


class Generator:
    def __init__(self, folder: Path) -> None:
        import torch

        self._torch = torch
        self.model, self.tokenizer = mlflow_folder.load_for_inference(folder)
        if not getattr(self.tokenizer, "chat_template", None):
            self.tokenizer.chat_template = CHAT_TEMPLATE
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids: list[int] = list(eos) if isinstance(eos, list | tuple) else [int(eos)]
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 4096)

    def _prompt_ids(self, item: ScoringInput) -> Any:
        if isinstance(item, str):
            ids = self.tokenizer(item, return_tensors="pt")["input_ids"]
        else:
            ids = self.tokenizer.apply_chat_template(item, add_generation_prompt=True, return_tensors="pt",
                                                     return_dict=True)["input_ids"]
        if ids.shape[1] >= self.context:
            raise BadRequest(f"the input is {ids.shape[1]} tokens; the model's context is {self.context} tokens")
        return ids

    def complete(self, item: ScoringInput, params: GenerationParams, deadline: float,
                 on_text: Callable[[str], None] | None = None) -> str:
        """The generated reply (special tokens removed). Raises DeadlineExceeded past ``deadline``.
        ``on_text`` receives the reply as it is generated, piece by piece; the pieces join to the reply."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        torch = self._torch
        if time.monotonic() >= deadline:
            raise DeadlineExceeded
        ids = self._prompt_ids(item)
        expired = threading.Event()

        class _Deadline(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                if time.monotonic() >= deadline:
                    expired.set()
                return torch.full((input_ids.shape[0],), expired.is_set(), dtype=torch.bool)

        kwargs: dict[str, Any] = {
            "max_new_tokens": min(params.max_new_tokens, self.context - ids.shape[1]),
            "eos_token_id": self.eos_ids,
            "pad_token_id": self.pad_id,
            "stopping_criteria": StoppingCriteriaList([_Deadline()]),
        }
        if params.sampling:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if on_text is not None:
            trimmed = _Trimmed(on_text)

            class _Pieces(TextStreamer):
                def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                    trimmed.feed(text)

            kwargs["streamer"] = _Pieces(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
        if expired.is_set():
            raise DeadlineExceeded
        text: str = self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return text.strip()


class _Trimmed:
    """Passes text on without its leading and trailing whitespace, as ``complete`` returns it: leading
    whitespace is dropped, inner whitespace held until more text follows."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._started = False
        self._held = ""

    def feed(self, text: str) -> None:
        if not self._started:
            text = text.lstrip()
            if not text:
                return
            self._started = True
        body = text.rstrip()
        if body:
            self._out(self._held + body)
            self._held = text[len(body):]
        else:
            self._held += text
