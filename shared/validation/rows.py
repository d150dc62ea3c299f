"""The per-row checks: one conversation in, its problems and facts out.

Token estimate (cheap, deterministic, no tokenizer): a message costs ``ceil(utf8_bytes / 4) + 4``
tokens — about four bytes a token for English BPE vocabularies, plus ~4 tokens of chat-template
overhead (role marker, end marker, newlines). It is an estimate, good to a few tens of percent; it
decides only warnings and the "no assistant tokens after truncation" error, which fires only when
the turns before the first assistant message alone reach ``max_seq_length``.

Hot path: this runs once per row. A well-formed row takes a fast path made of C-level operations
(list comprehensions, ``all``/``any`` over ``map``): the role sequence is judged once per distinct
sequence and cached, the UTF-8 length of an ASCII string is its ``len`` (``isascii`` is O(1)),
reserved tokens are looked for only after a one-character ``in`` (memchr) on their first
characters. Anything unusual falls through to ``diagnose``, the message-by-message loop that
names every problem. The conversation key is XXH3-64 of the ``messages`` list as compact JSON
(roles, contents and any other message keys, in their order): the same in every process, so
rows checked in worker processes compare with each other, and about as cheap as Python's own
``hash`` of the strings. It is used only for duplicate and overlap detection.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any

import orjson
import xxhash

MESSAGE_OVERHEAD = 4
KNOWN_KEYS = frozenset({"messages", "prompt", "prompt_id"})
_ROLE_NAMES = frozenset({"system", "user", "assistant"})
_MISSING: Any = object()

Problem = tuple[str, str, "int | None"]  # code, message, message index
Facts = tuple[
    "list[Problem] | None",  # problems (None: the row is valid)
    int,  # messages
    int,  # estimated tokens
    int,  # assistant tokens
    bool,  # has a system prompt
    int,  # conversation key (non-zero)
    "list[str] | None",  # keys other than messages/prompt/prompt_id
]


def estimate_tokens(content: str) -> int:
    """The token estimate of one message with this content (see the module docstring)."""
    size = len(content) if content.isascii() else len(content.encode("utf-8", "surrogatepass"))
    return ((size + 3) >> 2) + MESSAGE_OVERHEAD


_KINDS = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}


def short(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: messages quote user data, which may be huge."""
    text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit])
    return text if len(text) <= limit + 2 else text[:limit] + "…"


def _label(role: object) -> str:
    return role if isinstance(role, str) and role in _ROLE_NAMES else short(role)


def kind(value: object) -> str:
    """A JSON-ish name for a value's type, for messages."""
    if value is None:
        return "null"
    return _KINDS.get(type(value), type(value).__name__)


def _first_assistant(roles: tuple[Any, ...]) -> int:
    """Index of the first assistant message if ``roles`` is a valid turn order, else -1.

    Valid: every role is system/user/assistant, system only first, no role twice in a row, and
    the last is assistant — so after the first assistant turn, user and assistant alternate.
    """
    if not roles or roles[-1] != "assistant":
        return -1
    previous = None
    for index, role in enumerate(roles):
        if role == previous or not (role in ("user", "assistant") or (role == "system" and index == 0)):
            return -1
        previous = role
    return roles.index("assistant")


def make_checker(reserved_tokens: tuple[str, ...], max_seq_length: int) -> Callable[[Any], Facts]:
    """A function checking one row against every row-level rule."""
    reserved = tuple(t for t in reserved_tokens if t)
    first_chars = tuple(sorted({t[0] for t in reserved}))
    first_char = first_chars[0] if len(first_chars) == 1 else ""  # the common case: one memchr per message
    known_keys = KNOWN_KEYS
    digest, dumps = xxhash.xxh3_64_intdigest, orjson.dumps
    turn_orders: dict[tuple[Any, ...], int] = {}  # role sequence → first assistant index (or -1)
    isspace, contains = str.isspace, str.__contains__

    def check(row: Any) -> Facts:
        if type(row) is not dict:
            return ([("row_not_object", f"row is {kind(row)}, not a JSON object", None)], 0, 0, 0, False, 0, None)
        messages = row.get("messages", _MISSING)
        if type(messages) is not list or not messages:
            if messages is _MISSING:
                keys = ", ".join(short(k) for k in list(row)[:8]) or "none"
                problem = ("messages_missing", f"row has no 'messages' key (its keys: {keys})", None)
            elif type(messages) is list:
                problem = ("messages_empty", "'messages' is an empty list", None)
            else:
                problem = ("messages_not_list", f"'messages' is {kind(messages)}, expected a list of messages", None)
            return ([problem], 0, 0, 0, False, 0, None)
        # the fast path: a well-formed conversation, checked with C-level passes over its messages
        try:
            roles = tuple([m["role"] for m in messages])
            contents = [m["content"] for m in messages]
            first = turn_orders.get(roles, -2)
            if first == -2:
                first = _first_assistant(roles)
                if len(turn_orders) < 4096 and set(roles) <= _ROLE_NAMES:  # never cache arbitrary values
                    turn_orders[roles] = first
            # all(): no empty content; isspace/contains raise TypeError on a non-str content
            fast = first >= 0 and all(contents) and not any(map(isspace, contents))
            if fast and first_char:
                fast = not any(map(contains, contents, repeat(first_char)))
            elif fast and first_chars:
                fast = not any(any(map(contains, contents, repeat(char))) for char in first_chars)
        except (KeyError, TypeError):
            fast = False
        if fast:
            costs = [
                ((len(c) if c.isascii() else len(c.encode("utf-8", "surrogatepass"))) + 3 >> 2) + MESSAGE_OVERHEAD
                for c in contents
            ]
            total = sum(costs)
            # (the turns before the first assistant message can only reach the limit if all do)
            if total < max_seq_length or sum(costs[:first]) < max_seq_length:
                unknown = None if row.keys() <= known_keys else [k for k in row if k not in known_keys]
                return (
                    None,
                    len(costs),
                    total,
                    sum(costs[first::2]),
                    roles[0] == "system",
                    digest(dumps(messages, default=repr)) or 1,
                    unknown,
                )
        return diagnose(row, messages)

    def diagnose(row: dict[str, Any], messages: list[Any]) -> Facts:
        """Every problem of a row, message by message (also confirms the rare valid row the fast
        path could not: e.g. a '<' in content that starts no reserved token)."""
        problems: list[Problem] | None = None
        tokens = assistant_tokens = 0
        before_assistant = -1
        previous: object = None
        for index, message in enumerate(messages):
            if type(message) is not dict:
                problems = problems or []
                problems.append(
                    ("message_not_object", f"message {index} is {kind(message)}, expected {{role, content}}", index)
                )
                previous = None
                continue
            role = message.get("role", _MISSING)
            content = message.get("content", _MISSING)
            # content
            if type(content) is str and content and not content.isspace():
                size = len(content) if content.isascii() else len(content.encode("utf-8", "surrogatepass"))
                cost = ((size + 3) >> 2) + MESSAGE_OVERHEAD
                for char in first_chars:
                    if char in content:
                        found = [t for t in reserved if t in content]
                        if found:
                            problems = problems or []
                            problems.append(
                                (
                                    "reserved_token",
                                    f"message {index} ({_label(role)}) contains the chat-template token {found[0]!r}"
                                    + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
                                    + ": the model would read it as a turn boundary",
                                    index,
                                )
                            )
                        break
            else:
                cost = MESSAGE_OVERHEAD
                problems = problems or []
                if content is _MISSING:
                    problems.append(("content_missing", f"message {index} has no 'content'", index))
                elif type(content) is not str:
                    problems.append(
                        ("content_not_string", f"message {index} content is {kind(content)}, expected a string", index)
                    )
                else:
                    what = "empty" if not content else "only whitespace"
                    problems.append(("content_empty", f"message {index} ({_label(role)}) content is {what}", index))
            # role and turn order
            if role == "assistant":
                if before_assistant < 0:
                    before_assistant = tokens
                assistant_tokens += cost
            elif role == "user":
                pass
            elif role == "system":
                if index:
                    problems = problems or []
                    first = messages[0]
                    repeated = type(first) is dict and first.get("role") == "system"
                    again = "a second system message" if repeated else "a system message"
                    problems.append(
                        ("system_not_first", f"message {index} is {again}; only the first message may be system", index)
                    )
            else:
                problems = problems or []
                if role is _MISSING:
                    problems.append(("role_missing", f"message {index} has no 'role'", index))
                else:
                    problems.append(
                        (
                            "role_invalid",
                            f"message {index} role is {short(role)}; expected 'system', 'user' or 'assistant'",
                            index,
                        )
                    )
                role = None
            if role is not None and role == previous:
                problems = problems or []
                problems.append(
                    ("consecutive_roles", f"messages {index - 1} and {index} are both from {role!r}", index)
                )
            previous = role
            tokens += cost

        if before_assistant < 0:
            problems = problems or []
            problems.append(("missing_assistant", "no assistant message: nothing to learn from", None))
        else:
            if previous in ("user", "system"):
                last = previous
                problems = problems or []
                problems.append(
                    (
                        "last_not_assistant",
                        f"the last message ({len(messages) - 1}) is from {last!r}; a conversation must end "
                        "with the assistant's reply",
                        len(messages) - 1,
                    )
                )
            if before_assistant >= max_seq_length:
                problems = problems or []
                problems.append(
                    (
                        "no_assistant_tokens",
                        f"≈{before_assistant:,} tokens come before the first assistant message; truncated to "
                        f"max_seq_length={max_seq_length:,} no assistant token is left to train on",
                        None,
                    )
                )
        if problems is not None:
            return (problems, len(messages), tokens, assistant_tokens, False, 0, None)
        unknown = None if row.keys() <= known_keys else [k for k in row if k not in known_keys]
        key = digest(dumps(messages, default=repr)) or 1
        return (None, len(messages), tokens, assistant_tokens, messages[0]["role"] == "system", key, unknown)

    return check
