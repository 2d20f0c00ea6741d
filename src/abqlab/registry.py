"""One generic registry: named entries, lazy ``module:attr`` targets, typo suggestions."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for unknown or duplicate registry names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain line
        return str(self.args[0])


class Registry(Generic[T]):
    """A name → object map for one kind of component (formats, losses, architectures...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """Register ``obj`` (or a ``"module:attr"`` string) as ``name``; works as a decorator."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def decorator(target: T) -> T:
            self._add(name, target)
            return target

        return decorator

    def _add(self, name: str, obj: T | str) -> None:
        if name in self._entries:
            raise RegistryError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """Return the entry for ``name``, importing lazy entries; suggest close names on a typo."""
        if name not in self._entries:
            raise RegistryError(self.unknown_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def unknown_message(self, name: str) -> str:
        """One line naming the unknown entry, close matches and the allowed names."""
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return f"unknown {self.kind} '{name}'{hint}; allowed: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
