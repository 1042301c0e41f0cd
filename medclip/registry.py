"""A small typed registry with entry-point discovery.

Built-in plugins (``modalities/``, the losses in ``medclip.losses``) and third-party packages register the same way:
through an entry-point group (``medclip.modalities``, ``medclip.losses``, ``medclip.recipes``) or, in code, through
the ``register`` decorator.

Naming rule: a registry is a module constant named for what it holds, in the plural (``MODALITIES``, ``LOSSES``,
``RECIPES``; inside a modality package prefixed with the modality: ``CT_READERS``, ``WSI_SLIDE_ENCODERS``); the
public ones come with ``register_<thing>``, ``get_<thing>`` where a lookup needs more than the class, and
``list_<things>(pattern=None)``. Entry points are loaded lazily on the first lookup, and a plugin that fails to import
only warns: one broken plugin must never break ``import medclip``.
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """Raised for an unknown or duplicate name; the message lists what is available."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Maps short names to objects (classes or factories) of one kind.

    Args:
        kind: what the registry holds, used in error messages ("modality", "loss").
        entry_point_group: the ``importlib.metadata`` group scanned on first use, or None.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = entry_point_group is None
        self.load_errors: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")``."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item and not overwrite:
                raise RegistryError(f"{self.kind} {name!r} is already registered ({self._items[name]!r})")
            self._items[name] = item
            return item

        if obj is not None:
            return add(obj)
        return add

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for entry_point in entry_points(group=self.entry_point_group):
            if entry_point.name in self._items:
                continue
            try:
                self._items[entry_point.name] = entry_point.load()
            except Exception as error:  # a broken plugin warns; it never breaks the import of medclip
                self.load_errors[entry_point.name] = f"{type(error).__name__}: {error}"
                warnings.warn(
                    f"medclip: could not load {self.kind} plugin {entry_point.name!r} ({entry_point.value}): "
                    f"{type(error).__name__}: {error}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def get(self, name: str) -> T:
        """Return the object registered as ``name``; unknown names raise with the closest match."""
        self._load_entry_points()
        if name not in self._items:
            known = sorted(self._items)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            broken = f" (failed to load: {self.load_errors[name]})" if name in self.load_errors else ""
            raise RegistryError(f"unknown {self.kind} {name!r}{broken}{hint} Available: {', '.join(known) or 'none'}")
        return self._items[name]

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted; with ``pattern`` only those matching it (shell-style: ``"soft*"``, ``"*clip"``)."""
        self._load_entry_points()
        names = sorted(self._items)
        return names if pattern is None else fnmatch.filter(names, pattern)

    def declared(self) -> dict[str, str | T]:
        """Every name without importing anything: objects registered in code, and the ``module:attr`` value of each
        entry point not loaded yet. Lets ``medclip --help`` list recipes without importing torch."""
        declared: dict[str, str | T] = dict(self._items)
        if not self._entry_points_loaded:
            for entry_point in entry_points(group=self.entry_point_group):
                declared.setdefault(entry_point.name, entry_point.value)
        return dict(sorted(declared.items()))

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]


def lazy_import(module: str, feature: str, package: str | None = None):
    """Import an optional dependency, failing with a message that says which feature needs which package."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{feature} needs the optional package {package or module!r}: pip install {package or module}"
        ) from error


Factory = Callable[..., T]
