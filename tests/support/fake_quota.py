"""A workspace MLClient's ``compute.list_sizes()`` / ``compute.list_usage()``, in memory, for quota unit tests.

The entities are shaped as azure-ai-ml 1.35 hands them back (``VmSize``/``Usage._from_rest_object`` copy the
REST body's keys into ``__dict__``): ``vCPUs`` and ``currentValue`` hold the numbers while ``v_cp_us`` and
``current_value`` stay None, and ``name`` is a plain dict. The emulator tests cover the real SDK path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


def vm_size(name: str, family: str, vcpus: int, gpus: int = 1) -> SimpleNamespace:
    return SimpleNamespace(name=name, family=family, v_cp_us=None, vCPUs=vcpus, gpus=gpus)


def usage(value: str, current: int, limit: int, *, localized: str | None = None,
          kind: str = "vmFamily") -> SimpleNamespace:
    return SimpleNamespace(
        id=f"/subscriptions/s/usages/{value}", type=f"Microsoft.MachineLearningServices/{kind}/usages",
        unit="Count", current_value=None, currentValue=current, limit=limit,
        name={"value": value, "localizedValue": localized or value},
    )


@dataclass
class FakeCompute:
    sizes: list[Any] = field(default_factory=list)
    usages: list[Any] = field(default_factory=list)
    error: Exception | None = None  # raised while the listing is iterated, as ItemPaged does
    calls: list[str] = field(default_factory=list)

    def _items(self, what: str, items: list[Any]) -> Iterator[Any]:
        self.calls.append(what)
        if self.error is not None:
            raise self.error
        yield from items

    def list_sizes(self) -> Iterator[Any]:
        return self._items("list_sizes", self.sizes)

    def list_usage(self) -> Iterator[Any]:
        return self._items("list_usage", self.usages)


def workspace(sizes: list[Any], usages: list[Any], error: Exception | None = None) -> SimpleNamespace:
    return SimpleNamespace(compute=FakeCompute(sizes, usages, error))
