"""Reserved chat-template tokens per base-model family.

A dataset whose content contains its model's template tokens can forge turns during fine-tuning,
so validation refuses them. Families are matched by name prefix (case-insensitive);
``TUNEFLOW_RESERVED_TOKENS`` overrides the table for any model.
"""

from __future__ import annotations

_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("phi-3", ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>")),
    (  # Phi-4-mini keeps Phi-3's turn tokens and adds tool calling
        "phi-4-mini",
        ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>", "<|tool|>", "<|/tool|>",
         "<|tool_call|>", "<|/tool_call|>", "<|tool_response|>"),
    ),
    ("phi-4", ("<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|endoftext|>")),
    (
        "meta-llama-3",
        ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>"),
    ),
    ("mistral", ("[INST]", "[/INST]", "<s>", "</s>")),
    ("qwen", ("<|im_start|>", "<|im_end|>", "<|endoftext|>")),
)


def reserved_tokens(base_model: str, override: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The tokens refused in content for ``base_model`` (``override`` wins when given)."""
    if override:
        return override
    name = base_model.lower().rsplit("/", 1)[-1]
    for prefix, tokens in _FAMILIES:
        if name.startswith(prefix):
            return tokens
    return ()
