"""HTTP trigger route templates, read the way the Functions host (ASP.NET Core routing) reads them.

Supported: literal segments (matched case-insensitively), `{param}`, optional `{param?}`, defaults
`{param=value}`, catch-all `{*rest}` / `{**rest}`, segments mixing literals and parameters
(`{file}.{ext}`), and the inline constraints ASP.NET Core knows (`int`, `long`, `bool`, `guid`,
`alpha`, `min(n)`, `range(a,b)`, `regex(...)`, ...; several may be chained: `{id:int:min(1)}`).
A trailing slash on the request path is ignored, as in ASP.NET Core. Route values are
URL-decoded except `%2F`, which stays encoded (ASP.NET Core does the same).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Generic, TypeVar
from urllib.parse import unquote


class RouteError(ValueError):
    """A route template the host would reject."""


Constraint = Callable[[str], bool]


def _is_int(bits: int) -> Constraint:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(v: str) -> bool:
        return bool(re.fullmatch(r"[+-]?\d+", v)) and low <= int(v) <= high

    return check


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _is_decimal(v: str) -> bool:
    try:
        Decimal(v)
    except InvalidOperation:
        return False
    return True


def _is_guid(v: str) -> bool:
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


def _is_datetime(v: str) -> bool:
    try:
        dt.datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


def _number_arg(args: list[str], name: str, count: int) -> list[int]:
    if len(args) != count or not all(re.fullmatch(r"-?\d+", a.strip()) for a in args):
        raise RouteError(f"constraint {name} takes {count} integer argument(s), got {args}")
    return [int(a) for a in args]


def _make_constraint(name: str, arg_text: str | None) -> Constraint:
    simple: dict[str, Constraint] = {
        "int": _is_int(32),
        "long": _is_int(64),
        "float": _is_float,
        "double": _is_float,
        "decimal": _is_decimal,
        "guid": _is_guid,
        "datetime": _is_datetime,
        "bool": lambda v: v.lower() in ("true", "false"),
        "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
        "required": lambda v: v != "",
        "file": lambda v: "." in v.rsplit("/", 1)[-1],
        "nonfile": lambda v: "." not in v.rsplit("/", 1)[-1],
    }
    key = name.lower()
    if key in simple:
        if arg_text is not None:
            raise RouteError(f"constraint {name} takes no arguments")
        return simple[key]
    if key == "regex":
        if arg_text is None:
            raise RouteError("constraint regex needs a pattern: regex(...)")
        pattern = re.compile(arg_text, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    args = [] if arg_text is None else arg_text.split(",")
    if key in ("min", "max"):
        (bound,) = _number_arg(args, name, 1)
        is_int = _is_int(64)
        if key == "min":
            return lambda v: is_int(v) and int(v) >= bound
        return lambda v: is_int(v) and int(v) <= bound
    if key == "range":
        low, high = _number_arg(args, name, 2)
        is_int = _is_int(64)
        return lambda v: is_int(v) and low <= int(v) <= high
    if key in ("minlength", "maxlength"):
        (n,) = _number_arg(args, name, 1)
        return (lambda v: len(v) >= n) if key == "minlength" else (lambda v: len(v) <= n)
    if key == "length":
        bounds = _number_arg(args, name, len(args) if len(args) in (1, 2) else 1)
        low, high = (bounds[0], bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
        return lambda v: low <= len(v) <= high
    raise RouteError(f"unknown route constraint {name!r}")


@dataclass
class _Param:
    name: str
    constraints: list[Constraint] = field(default_factory=list)
    optional: bool = False
    default: str | None = None
    catch_all: bool = False


def _parse_param(body: str, template: str) -> _Param:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    i = 0
    while i < len(body) and body[i] not in ":=?":
        i += 1
    name = body[:i]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteError(f"bad parameter name {name!r} in route {template!r}")
    param = _Param(name, catch_all=catch_all)
    while i < len(body) and body[i] == ":":
        i += 1
        start = i
        while i < len(body) and (body[i].isalnum() or body[i] == "_"):
            i += 1
        cname = body[start:i]
        arg: str | None = None
        if i < len(body) and body[i] == "(":
            depth, j = 0, i
            while j < len(body):
                if body[j] == "(":
                    depth += 1
                elif body[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth:
                raise RouteError(f"unbalanced parentheses in route {template!r}")
            arg = body[i + 1 : j]
            i = j + 1
        param.constraints.append(_make_constraint(cname, arg))
    rest = body[i:]
    if rest.startswith("="):
        param.default, param.optional = rest[1:], True
    elif rest == "?":
        param.optional = True
    elif rest:
        raise RouteError(f"cannot read {rest!r} in route {template!r}")
    return param


def _split_segment(segment: str, template: str) -> list[str | _Param]:
    parts: list[str | _Param] = []
    i = 0
    while i < len(segment):
        if segment[i] == "{":
            # inside a parameter `{{` and `}}` are literal braces (regex constraints), as in ASP.NET Core
            body: list[str] = []
            j = i + 1
            while True:
                if j >= len(segment):
                    raise RouteError(f"unclosed '{{' in route {template!r}")
                pair = segment[j : j + 2]
                if pair in ("{{", "}}"):
                    body.append(pair[0])
                    j += 2
                elif segment[j] == "}":
                    break
                else:
                    body.append(segment[j])
                    j += 1
            parts.append(_parse_param("".join(body), template))
            i = j + 1
        else:
            end = segment.find("{", i)
            end = len(segment) if end < 0 else end
            if "}" in segment[i:end]:
                raise RouteError(f"stray '}}' in route {template!r}")
            parts.append(segment[i:end])
            i = end
    return parts


def _decode(value: str) -> str:
    # ASP.NET Core keeps an encoded slash encoded inside a route value.
    return unquote(re.sub("%2[fF]", "%252F", value))


@dataclass
class CompiledRoute:
    template: str
    regex: re.Pattern[str]
    params: dict[str, _Param]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        values: dict[str, str] = {}
        for group, param in self.params.items():
            raw = m.group(group)
            if raw is None or raw == "":
                if param.default is not None:
                    values[param.name] = param.default
                continue
            value = _decode(raw)
            if not all(check(value) for check in param.constraints):
                return None
            values[param.name] = value
        return values


def compile_route(template: str) -> CompiledRoute:
    text = template.strip().strip("/")
    segments = text.split("/") if text else []
    regex_parts: list[str] = []
    params: dict[str, _Param] = {}
    precedence: list[int] = []
    seen: set[str] = set()
    for index, segment in enumerate(segments):
        if segment == "":
            raise RouteError(f"route {template!r} has an empty segment")
        parts = _split_segment(segment, template)
        sep = "/" if index else ""
        last = index == len(segments) - 1
        for part in parts:
            if isinstance(part, _Param):
                if part.name.lower() in seen:
                    raise RouteError(f"parameter {part.name!r} appears twice in route {template!r}")
                seen.add(part.name.lower())
                if part.catch_all and not last:
                    raise RouteError(f"catch-all {{*{part.name}}} must be the last segment of {template!r}")
        if len(parts) == 1 and isinstance(parts[0], _Param):
            param = parts[0]
            group = f"p{len(params)}"
            params[group] = param
            body = ".*" if param.catch_all else "[^/]+"
            if param.catch_all or param.optional:
                if not last:
                    raise RouteError(f"optional parameter {param.name!r} must be last in {template!r}")
                regex_parts.append(f"(?:{sep}(?P<{group}>{body}))?")
            else:
                regex_parts.append(f"{sep}(?P<{group}>{body})")
            precedence.append(5 if param.catch_all else (3 if param.constraints else 4))
            continue
        piece = [re.escape(sep)]
        for part in parts:
            if isinstance(part, str):
                piece.append(re.escape(part))
            else:
                if part.catch_all or (part.optional and part is not parts[-1]):
                    raise RouteError(f"parameter {part.name!r} cannot be optional inside segment {segment!r}")
                group = f"p{len(params)}"
                params[group] = part
                piece.append(f"(?P<{group}>[^/]+)" + ("?" if part.optional else ""))
        regex_parts.append("".join(piece))
        precedence.append(1 if all(isinstance(p, str) for p in parts) else 2)
    return CompiledRoute(template, re.compile("".join(regex_parts), re.IGNORECASE), params, tuple(precedence))


T = TypeVar("T")


@dataclass
class RouteEntry(Generic[T]):
    route: CompiledRoute
    methods: frozenset[str] | None  # None: every method
    target: T


class RouteTable(Generic[T]):
    """HTTP routes in ASP.NET Core precedence order (literal before parameter before catch-all)."""

    def __init__(self, entries: Iterable[RouteEntry[T]]) -> None:
        self.entries: Sequence[RouteEntry[T]] = sorted(entries, key=lambda e: e.route.precedence)

    def resolve(self, path: str, method: str) -> tuple[RouteEntry[T] | None, dict[str, str], bool]:
        """(entry, route values, path matched at all) for a path below the route prefix."""
        path = path.strip("/") if path.endswith("/") else path.lstrip("/")
        path_matched = False
        for entry in self.entries:
            values = entry.route.match(path)
            if values is None:
                continue
            path_matched = True
            if entry.methods is None or method in entry.methods:
                return entry, values, True
        return None, {}, path_matched
