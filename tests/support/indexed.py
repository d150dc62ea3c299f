"""The function app, indexed once per test process: ``get_functions()`` may be called once per app object
(a second call re-registers every function and fails on the duplicate names)."""

from __future__ import annotations

from functools import cache

import azure.functions as func

from devhost.discovery import FunctionSpec, discover


@cache
def app_functions() -> tuple[func.Function, ...]:
    import function_app

    return tuple(function_app.app.get_functions())


class _Indexed:
    """A stand-in app whose ``get_functions`` answers the one indexing, for devhost's ``discover``."""

    def get_functions(self) -> list[func.Function]:
        return list(app_functions())


@cache
def function_specs() -> dict[str, FunctionSpec]:
    """Every function as devhost (and the worker's converters) see it, by name."""
    return {s.name: s for s in discover(_Indexed())}  # type: ignore[arg-type]
