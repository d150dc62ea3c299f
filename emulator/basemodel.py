"""The emulator's base models: tiny chat LMs built offline, once each, and cached.

Nothing may come from the Hugging Face hub, so the "registry" base model is made here: a byte-level
BPE tokenizer trained on a generated English corpus (with the chat format's tokens as special tokens) and
a small ``Phi3ForCausalLM`` briefly pre-trained on the same corpus. The corpus holds world facts as plain
prose ("The capital of Kenya is Nairobi.") and small-talk chats in the chat template, but no question
answered with a capital: the base model knows the facts and the chat format, and fine-tuning on the
demo dataset teaches it to answer capital questions, which shows as a lower eval loss and as correct
answers for countries the fine-tune never saw.

There is one stand-in per chat format the registry's models use (``STANDINS``): ``phi3`` (Phi-3's
template, what the configured base model is served with) and ``phi4`` (Phi-4's ``<|im_start|>`` /
``<|im_sep|>`` / ``<|im_end|>`` template, its own seed, so its weights differ too). Same size, same
corpus generator; each corpus renders its chats in its own template.

A build is deterministic (fixed seeds and step count), takes about 30 s on 2 idle cores, is cached
under a name derived from its recipe, and is atomic (built in a temporary directory, renamed into
place under a file lock), so concurrent callers get one build.

``python -m emulator.basemodel --cache-dir DIR [--model phi3|phi4]`` builds (or finds) one and prints
its directory.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Before torch loads OpenMP: idle threads sleep instead of spinning. With the default (spin), processes sharing
# 2 cores (a build, a trainer, scorers, tests) slowed each other 3-20x; alone, passive is at most ~1.5x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Phi-3's chat template (as published with Phi-3-mini-4k-instruct): every turn ends with <|end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
EOS_TOKEN = "<|endoftext|>"
END_TOKEN = "<|end|>"
SPECIAL_TOKENS = [EOS_TOKEN, "<|system|>", "<|user|>", "<|assistant|>", END_TOKEN]

# The recipe. It (with COUNTRIES and the template) names the cache entry, so a changed recipe is rebuilt;
# bump "version" when the corpus or the training code changes.
RECIPE: dict[str, Any] = {
    "version": 1,
    "seed": 1234,
    "vocab_size": 2048,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "max_position_embeddings": 2048,
    "corpus_docs": 6000,
    "fact_fraction": 0.6,
    "story_fraction": 0.15,
    "block_size": 64,
    "batch_size": 8,
    "steps": 600,
    "learning_rate": 3e-3,
    "warmup_steps": 10,
}

# Phi-4's chat template (as published with microsoft/phi-4): no newlines, every turn ends with <|im_end|>,
# which is also its eos_token; <|endoftext|> is its bos and document separator, <|dummy_85|> its pad.
PHI4_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if (message['role'] == 'system') %}{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}"
    "{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|>'}}"
    "{% elif (message['role'] == 'assistant') %}"
    "{{'<|im_start|>assistant<|im_sep|>' + message['content'] + '<|im_end|>'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}"
)
PHI4_RECIPE: dict[str, Any] = {**RECIPE, "seed": 4242}


@dataclass(frozen=True)
class StandIn:
    """One stand-in: its chat format and the recipe that (with COUNTRIES and the template) names its cache entry."""

    name: str  # the --model value; the cache directory is tiny-<name>-<recipe key>
    chat_template: str
    turn_format: str  # one rendered turn, for the corpus ({role}, {content})
    special_tokens: tuple[str, ...]
    eos_token: str  # the tokenizer's eos
    end_of_turn: str  # what closes a reply: generation stops there (and at the document separator)
    pad_token: str
    bos_token: str | None
    recipe: dict[str, Any]
    doc_end: str = EOS_TOKEN  # separates corpus documents


PHI3 = StandIn(name="phi3", chat_template=CHAT_TEMPLATE, turn_format="<|{role}|>\n{content}<|end|>\n",
               special_tokens=tuple(SPECIAL_TOKENS), eos_token=EOS_TOKEN, end_of_turn=END_TOKEN, pad_token=EOS_TOKEN,
               bos_token=None, recipe=RECIPE)
PHI4 = StandIn(name="phi4", chat_template=PHI4_CHAT_TEMPLATE,
               turn_format="<|im_start|>{role}<|im_sep|>{content}<|im_end|>",
               special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|dummy_85|>"),
               eos_token="<|im_end|>", end_of_turn="<|im_end|>", pad_token="<|dummy_85|>", bos_token="<|endoftext|>",
               recipe=PHI4_RECIPE)
STANDINS: dict[str, StandIn] = {s.name: s for s in (PHI3, PHI4)}


def standin(name: str) -> StandIn:
    try:
        return STANDINS[name]
    except KeyError:
        raise ValueError(f"unknown stand-in {name!r} (known: {', '.join(STANDINS)})") from None


# Fine-tuning settings that suit this tiny model: the registry's Phi-3 settings (LoRA r 8, alpha 128, one
# epoch, batch 1, cosine) with a learning rate for 1M parameters instead of 3.8B. Phi-3's 5e-6 lowers the
# demo's eval loss only a little (1.40 -> 1.03) and answers no held-out question; 2e-4 reaches ~0.15 and
# answers them. The emulator can offer these as ``model_specific_defaults`` when it serves this model.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "apply_lora": "true",
    "num_train_epochs": 1,
    "per_device_train_batch_size": 1,
    "learning_rate": 2e-4,
    "lr_scheduler_type": "cosine",
}

# (country as written mid-sentence, capital, continent, language). Real facts, ASCII spellings.
COUNTRIES: list[tuple[str, str, str, str]] = [
    ("France", "Paris", "Europe", "French"), ("Germany", "Berlin", "Europe", "German"),
    ("Italy", "Rome", "Europe", "Italian"), ("Spain", "Madrid", "Europe", "Spanish"),
    ("Portugal", "Lisbon", "Europe", "Portuguese"), ("the Netherlands", "Amsterdam", "Europe", "Dutch"),
    ("Austria", "Vienna", "Europe", "German"), ("Switzerland", "Bern", "Europe", "German"),
    ("Poland", "Warsaw", "Europe", "Polish"), ("Sweden", "Stockholm", "Europe", "Swedish"),
    ("Norway", "Oslo", "Europe", "Norwegian"), ("Denmark", "Copenhagen", "Europe", "Danish"),
    ("Finland", "Helsinki", "Europe", "Finnish"), ("Ireland", "Dublin", "Europe", "English"),
    ("Greece", "Athens", "Europe", "Greek"), ("Hungary", "Budapest", "Europe", "Hungarian"),
    ("Czechia", "Prague", "Europe", "Czech"), ("Romania", "Bucharest", "Europe", "Romanian"),
    ("Bulgaria", "Sofia", "Europe", "Bulgarian"), ("Croatia", "Zagreb", "Europe", "Croatian"),
    ("Serbia", "Belgrade", "Europe", "Serbian"), ("Ukraine", "Kyiv", "Europe", "Ukrainian"),
    ("Iceland", "Reykjavik", "Europe", "Icelandic"), ("Estonia", "Tallinn", "Europe", "Estonian"),
    ("Latvia", "Riga", "Europe", "Latvian"), ("Lithuania", "Vilnius", "Europe", "Lithuanian"),
    ("Slovakia", "Bratislava", "Europe", "Slovak"), ("the United Kingdom", "London", "Europe", "English"),
    ("Japan", "Tokyo", "Asia", "Japanese"), ("China", "Beijing", "Asia", "Chinese"),
    ("India", "New Delhi", "Asia", "Hindi"), ("South Korea", "Seoul", "Asia", "Korean"),
    ("Thailand", "Bangkok", "Asia", "Thai"), ("Vietnam", "Hanoi", "Asia", "Vietnamese"),
    ("Indonesia", "Jakarta", "Asia", "Indonesian"), ("the Philippines", "Manila", "Asia", "Filipino"),
    ("Malaysia", "Kuala Lumpur", "Asia", "Malay"), ("Nepal", "Kathmandu", "Asia", "Nepali"),
    ("Pakistan", "Islamabad", "Asia", "Urdu"), ("Bangladesh", "Dhaka", "Asia", "Bengali"),
    ("Iran", "Tehran", "Asia", "Persian"), ("Iraq", "Baghdad", "Asia", "Arabic"),
    ("Saudi Arabia", "Riyadh", "Asia", "Arabic"), ("Turkey", "Ankara", "Asia", "Turkish"),
    ("Mongolia", "Ulaanbaatar", "Asia", "Mongolian"), ("Qatar", "Doha", "Asia", "Arabic"),
    ("Jordan", "Amman", "Asia", "Arabic"), ("Lebanon", "Beirut", "Asia", "Arabic"),
    ("Cambodia", "Phnom Penh", "Asia", "Khmer"), ("Laos", "Vientiane", "Asia", "Lao"),
    ("Uzbekistan", "Tashkent", "Asia", "Uzbek"), ("Kazakhstan", "Astana", "Asia", "Kazakh"),
    ("Egypt", "Cairo", "Africa", "Arabic"), ("Kenya", "Nairobi", "Africa", "Swahili"),
    ("Nigeria", "Abuja", "Africa", "English"), ("Ghana", "Accra", "Africa", "English"),
    ("Ethiopia", "Addis Ababa", "Africa", "Amharic"), ("Morocco", "Rabat", "Africa", "Arabic"),
    ("Senegal", "Dakar", "Africa", "French"), ("Uganda", "Kampala", "Africa", "English"),
    ("Tanzania", "Dodoma", "Africa", "Swahili"), ("Algeria", "Algiers", "Africa", "Arabic"),
    ("Tunisia", "Tunis", "Africa", "Arabic"), ("Zimbabwe", "Harare", "Africa", "English"),
    ("Zambia", "Lusaka", "Africa", "English"), ("Angola", "Luanda", "Africa", "Portuguese"),
    ("Mali", "Bamako", "Africa", "French"), ("Rwanda", "Kigali", "Africa", "Kinyarwanda"),
    ("Sudan", "Khartoum", "Africa", "Arabic"), ("Libya", "Tripoli", "Africa", "Arabic"),
    ("Canada", "Ottawa", "North America", "English"), ("Mexico", "Mexico City", "North America", "Spanish"),
    ("the United States", "Washington", "North America", "English"),
    ("Cuba", "Havana", "North America", "Spanish"), ("Jamaica", "Kingston", "North America", "English"),
    ("Guatemala", "Guatemala City", "North America", "Spanish"),
    ("Brazil", "Brasilia", "South America", "Portuguese"),
    ("Argentina", "Buenos Aires", "South America", "Spanish"), ("Chile", "Santiago", "South America", "Spanish"),
    ("Peru", "Lima", "South America", "Spanish"), ("Colombia", "Bogota", "South America", "Spanish"),
    ("Venezuela", "Caracas", "South America", "Spanish"), ("Ecuador", "Quito", "South America", "Spanish"),
    ("Uruguay", "Montevideo", "South America", "Spanish"), ("Paraguay", "Asuncion", "South America", "Spanish"),
    ("Australia", "Canberra", "Oceania", "English"), ("New Zealand", "Wellington", "Oceania", "English"),
    ("Fiji", "Suva", "Oceania", "English"),
]

_NAMES = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jack", "Lena", "Max",
          "Nora", "Omar", "Paul", "Rosa", "Sam", "Tara", "Victor", "Zoe"]
_ANIMALS = ["cat", "dog", "bird", "horse", "fox", "rabbit", "cow", "duck", "mouse", "bear"]
_ADJECTIVES = ["small", "big", "old", "young", "happy", "quiet", "brown", "white", "black", "tired", "clever",
               "busy"]
_PLACES = ["garden", "park", "river", "forest", "kitchen", "market", "school", "library", "beach", "village"]
_VERBS = ["walked to", "ran to", "looked at", "sat near", "played in", "slept in", "waited by", "jumped over"]
_FOODS = ["bread", "apples", "rice", "soup", "cheese", "fish", "cake", "tea", "coffee", "pasta"]
_ACTIVITIES = ["read books", "cook dinner", "play music", "ride a bike", "swim", "paint", "write letters",
               "go for a walk", "plant flowers", "watch films"]
_TIMES = ["morning", "afternoon", "evening", "night", "summer", "winter", "spring", "autumn"]
_WEATHER = ["sunny", "rainy", "cold", "warm", "windy", "cloudy"]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _fact_sentences(rng: random.Random, country: str, capital: str, continent: str, language: str) -> list[str]:
    c = _cap(country)
    pool = [
        f"{c} is a country in {continent}.",
        f"The capital of {country} is {capital}.",
        f"The capital of {country} is {capital}.",
        f"{capital} is the capital of {country}.",
        f"The capital city of {country} is {capital}.",
        f"Many people live in {capital}, the capital of {country}.",
        f"People in {country} speak {language}.",
        f"{language} is spoken in {country}.",
        f"{capital} is a big city in {continent}.",
    ]
    return rng.sample(pool, k=rng.randint(3, 5))


def _story(rng: random.Random) -> str:
    name, other = rng.sample(_NAMES, 2)
    sentences = [
        f"The {rng.choice(_ADJECTIVES)} {rng.choice(_ANIMALS)} {rng.choice(_VERBS)} the {rng.choice(_PLACES)}.",
        f"{name} likes to {rng.choice(_ACTIVITIES)} in the {rng.choice(_TIMES)}.",
        f"It was {rng.choice(_WEATHER)} in the {rng.choice(_TIMES)}.",
        f"{name} and {other} ate {rng.choice(_FOODS)} at the {rng.choice(_PLACES)}.",
        f"{other} saw a {rng.choice(_ADJECTIVES)} {rng.choice(_ANIMALS)} near the {rng.choice(_PLACES)}.",
        f"In the {rng.choice(_TIMES)}, {name} went to the {rng.choice(_PLACES)} with {other}.",
        f"{name} said that the {rng.choice(_FOODS)} was very good.",
        f"The {rng.choice(_PLACES)} is a nice place to {rng.choice(_ACTIVITIES)}.",
    ]
    return " ".join(rng.sample(sentences, k=rng.randint(2, 4)))


def _chat(rng: random.Random) -> list[dict[str, str]]:
    """Small talk and questions about countries, never answered with a capital."""
    country, _capital, continent, language = rng.choice(COUNTRIES)
    c = _cap(country)
    kind = rng.randrange(6)
    if kind == 0:
        turns = (rng.choice(["Hello!", "Hi there.", "Good morning.", "Hey, how are you?"]),
                 rng.choice(["Hello! How can I help you today?", "Hi! I am happy to help.",
                             "Hello! What would you like to know?"]))
    elif kind == 1:
        turns = (rng.choice([f"What language do people speak in {country}?",
                             f"Which language is spoken in {country}?"]),
                 f"People in {country} speak {language}.")
    elif kind == 2:
        turns = (rng.choice([f"Where is {country}?", f"On which continent is {country}?"]),
                 f"{c} is a country in {continent}.")
    elif kind == 3:
        turns = (rng.choice([f"Tell me about {country}.", f"What do you know about {country}?"]),
                 f"{c} is a country in {continent}. People in {country} speak {language}.")
    elif kind == 4:
        turns = (rng.choice(["Tell me a short story.", "Can you tell me a story?", "Write a few sentences."]),
                 _story(rng))
    else:
        turns = (rng.choice(["Thank you.", "Thanks a lot!", "That was helpful."]),
                 rng.choice(["You are welcome.", "You are welcome! Have a nice day.", "I am glad I could help."]))
    messages = [{"role": "user", "content": turns[0]}, {"role": "assistant", "content": turns[1]}]
    if rng.random() < 0.2:
        messages.insert(0, {"role": "system", "content": "You are a helpful assistant."})
    return messages


def render_chat(messages: list[dict[str, str]], model: StandIn = PHI3) -> str:
    """The stand-in's template rendered without jinja, then the document separator (for the corpus; the
    tokenizer carries the real template)."""
    text = "".join(model.turn_format.format(role=m["role"], content=m["content"]) for m in messages)
    return text + model.doc_end


def corpus(seed: int, n_docs: int, model: StandIn = PHI3) -> Iterator[str]:
    """The generated pre-training corpus: facts prose, stories and chats in the stand-in's template."""
    rng = random.Random(seed)
    r = model.recipe
    for _ in range(n_docs):
        roll = rng.random()
        if roll < r["fact_fraction"]:
            country = rng.choice(COUNTRIES)
            yield " ".join(_fact_sentences(rng, *country))
        elif roll < r["fact_fraction"] + r["story_fraction"]:
            yield _story(rng)
        else:
            yield render_chat(_chat(rng), model)


def recipe_key(model: StandIn = PHI3) -> str:
    blob = json.dumps(model.recipe, sort_keys=True) + json.dumps(COUNTRIES) + model.chat_template
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_base_model(cache_dir: Path, source: Path | None = None,
                      log: Callable[[str], None] | None = None, model: str = "phi3") -> Path:
    """A Hugging Face-format model directory: ``source`` if given, else the cached stand-in ``model``."""
    if source is not None:
        source = Path(source)
        if not (source / "config.json").is_file():
            raise FileNotFoundError(f"base model directory {source} has no config.json")
        return source
    spec = standin(model)
    cache_dir = Path(cache_dir)
    final = cache_dir / f"tiny-{spec.name}-{recipe_key(spec)}"
    if (final / "config.json").is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".basemodel.lock") as exclusive:
        if (final / "config.json").is_file():  # another process built it while we waited
            return final
        if exclusive:  # no other build runs while we hold the lock: any temporary dir is a killed build's
            for stale in cache_dir.glob(".build-*"):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            build(tmp, log=log, model=spec)
            os.replace(tmp, final)
            (log or (lambda msg: print(msg, file=sys.stderr, flush=True)))(f"basemodel: cached at {final}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """An exclusive lock across processes and threads; yields False where there is none (Windows)."""
    try:
        import fcntl
    except ImportError:  # the atomic rename alone keeps the cache consistent
        yield False
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_tokenizer(texts: list[str], vocab_size: int, model: StandIn = PHI3) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Single digits keep numbers composable; byte-level keeps every input encodable.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(model.special_tokens), min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, eos_token=model.eos_token, pad_token=model.pad_token, bos_token=model.bos_token,
        unk_token=None, chat_template=model.chat_template, model_max_length=model.recipe["max_position_embeddings"],
        padding_side="right", clean_up_tokenization_spaces=False,
    )


def build(out: Path, log: Callable[[str], None] | None = None, model: StandIn = PHI3) -> None:
    """Train the tokenizer, pre-train the stand-in, save both into ``out``."""
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM, get_scheduler
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.monotonic()
    spec = model
    r = spec.recipe
    texts = list(corpus(r["seed"], r["corpus_docs"], spec))
    tokenizer = build_tokenizer(texts, r["vocab_size"], spec)
    say(f"basemodel: {spec.name} tokenizer trained ({len(tokenizer)} tokens) in {time.monotonic() - started:.1f}s")

    ids = tokenizer.convert_tokens_to_ids
    eos_id, end_id, pad_id, sep_id = (ids(t) for t in (spec.eos_token, spec.end_of_turn, spec.pad_token, spec.doc_end))
    bos_id = ids(spec.bos_token) if spec.bos_token else eos_id
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if not text.endswith(spec.doc_end):
            stream.append(sep_id)
    block = r["block_size"]
    n_blocks = len(stream) // block
    data = torch.tensor(stream[: n_blocks * block], dtype=torch.long).view(n_blocks, block)

    config = Phi3Config(
        vocab_size=len(tokenizer), hidden_size=r["hidden_size"], intermediate_size=r["intermediate_size"],
        num_hidden_layers=r["num_hidden_layers"], num_attention_heads=r["num_attention_heads"],
        num_key_value_heads=r["num_attention_heads"], max_position_embeddings=r["max_position_embeddings"],
        original_max_position_embeddings=r["max_position_embeddings"], tie_word_embeddings=True,
        bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=pad_id,
    )
    torch.manual_seed(r["seed"])
    lm: Any = Phi3ForCausalLM(config)
    lm.train()
    optimizer = torch.optim.AdamW(lm.parameters(), lr=r["learning_rate"], weight_decay=0.01)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=r["warmup_steps"],
                              num_training_steps=r["steps"])
    gen = torch.Generator().manual_seed(r["seed"])
    order = torch.randperm(n_blocks, generator=gen)
    cursor = 0
    loss_value = float("nan")
    for step in range(1, r["steps"] + 1):
        if cursor + r["batch_size"] > n_blocks:
            order, cursor = torch.randperm(n_blocks, generator=gen), 0
        batch = data[order[cursor: cursor + r["batch_size"]]]
        cursor += r["batch_size"]
        loss = lm(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if step % 100 == 0 or step == r["steps"]:
            say(f"basemodel: pre-training step {step}/{r['steps']} loss {loss_value:.3f}")
    lm.eval()
    lm.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=list(dict.fromkeys([end_id, eos_id, sep_id])), pad_token_id=pad_id, bos_token_id=bos_id,
        do_sample=False, max_new_tokens=128,
    )
    lm.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "tuneflow_basemodel.json").write_text(json.dumps({
        "standin": spec.name, "recipe": r, "recipe_key": recipe_key(spec), "corpus_tokens": len(stream),
        "final_pretraining_loss": loss_value, "build_seconds": round(time.monotonic() - started, 1),
        "finetune_defaults": FINETUNE_DEFAULTS,
    }, indent=2))
    say(f"basemodel: built in {time.monotonic() - started:.1f}s ({len(stream)} corpus tokens)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.basemodel", description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=None, help="a real local Hugging Face model directory")
    parser.add_argument("--model", choices=sorted(STANDINS), default=PHI3.name, help="which stand-in (phi3)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(ensure_base_model(args.cache_dir, args.source, model=args.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
