"""A tiny decorator registry for plug-ins (selection methods, trace formats, perturbations, eval backends, ...)."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from meds1.errors import MedS1Error

T = TypeVar("T")


class PluginRegistry(Generic[T]):
    """``@REG.register("name")`` adds a plug-in; ``REG.get(name)`` returns it or raises a one-line MedS1Error."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            for name in names:
                if name in self._items:
                    raise ValueError(f"{self.kind} '{name}' registered twice")
                self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, **where) -> T:
        if name not in self._items:
            raise MedS1Error(f"unknown {self.kind} '{name}'", choices=self._items, value=name, **where)
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
