"""``once``: a thread-safe cached property, for objects that build their parts on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class once(Generic[T]):
    """Like ``functools.cached_property``, but two threads asking first still build the value once
    (the Functions worker runs sync functions on a thread pool)."""

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self._name = build.__name__
        self._lock = threading.RLock()  # re-entrant: building one part may build another
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> once[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...

    def __get__(self, obj: object | None, owner: type) -> once[T] | T:
        if obj is None:
            return self
        values = obj.__dict__
        if self._name not in values:
            with self._lock:
                if self._name not in values:
                    values[self._name] = self._build(obj)
        value: T = values[self._name]
        return value


def provide(obj: object, **parts: Any) -> None:
    """Set ``once`` parts of ``obj`` before first use (tests hand in fakes); unknown names are refused."""
    for name, value in parts.items():
        if not isinstance(getattr(type(obj), name, None), once):
            raise TypeError(f"{type(obj).__name__} has no part {name!r}")
        obj.__dict__[name] = value
