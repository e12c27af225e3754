"""Plug-in registries: one per component kind, selected in YAML by class name.

A component is registered with a decorator::

    @QUANTIZERS.register
    class MyQuantizer(Quantizer): ...

and then selected in a config by ``class_path: MyQuantizer``. Third-party packages register their
components by exposing a module under the ``escx.plugins`` entry-point group; importing the module
runs its decorators. :func:`load_plugins` imports them all and turns an import failure into a
warning, so one broken plug-in never stops the built-ins from loading.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)

PLUGIN_GROUP = "escx.plugins"

# Modules that register the built-in components (imported by :func:`load_builtins`).
BUILTIN_MODULES = (
    "escx.backbones.swin",
    "escx.backbones.conv",
    "escx.quantizers.codebook",
    "escx.quantizers.fsq",
    "escx.quantizers.lfq",
    "escx.quantizers.simvq",
    "escx.quantizers.residual",
    "escx.quantizers.cross_scale",
    "escx.quantizers.factorized",
    "escx.codecs.stft_codec",
    "escx.codecs.waveform",
    "escx.discriminators.period",
    "escx.discriminators.spectral",
    "escx.discriminators.waveform",
)


class RegistryError(ValueError):
    """A component name is unknown or registered twice."""


class Registry(Generic[T]):
    """Name -> class table for one kind of component.

    Args:
        kind: human-readable kind ("quantizer"), used in messages and by ``escx list KIND``.
        base: every registered class must subclass it.
    """

    def __init__(self, kind: str, base: type) -> None:
        self.kind = kind
        self.base = base
        self._classes: dict[str, type] = {}

    def register(self, cls: T) -> T:
        """Class decorator: store ``cls`` under its ``__name__``."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise RegistryError(
                f"cannot register {cls!r} as a {self.kind}: it must subclass {self.base.__name__}"
            )
        name = cls.__name__
        previous = self._classes.get(name)
        if previous is not None and previous is not cls:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: by {previous.__module__} and by "
                f"{cls.__module__}; rename one of the classes"
            )
        self._classes[name] = cls
        return cls

    def get(self, name: str) -> type:
        """Look a class up by name, or by a dotted path that names that very class: its own
        module path, or a re-export in a module already loaded (``escx.STFTCodec``).

        A dotted path is never imported, and ``evil_mod.STFTCodec`` is not ``STFTCodec``: its
        last part alone does not select the class.
        """
        cls = self._lookup(name)
        if cls is None:
            raise RegistryError(self.unknown_message(name))
        return cls

    def _lookup(self, name: str) -> type | None:
        short = name.rsplit(".", 1)[-1]
        cls = self._classes.get(short)
        if cls is None or short == name:
            return cls
        if name == f"{cls.__module__}.{cls.__qualname__}":
            return cls
        from escx.security.class_paths import resolve_loaded

        return cls if resolve_loaded(name) is cls else None

    def unknown_message(self, name: str) -> str:
        """One-line error for an unknown name, with the valid names and a suggestion."""
        valid = ", ".join(sorted(self._classes)) or "(none registered)"
        close = difflib.get_close_matches(name.rsplit(".", 1)[-1], list(self._classes), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint or '.'} Valid {self.kind} names: {valid}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._lookup(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._classes))

    def __len__(self) -> int:
        return len(self._classes)

    def items(self) -> list[tuple[str, type]]:
        """Sorted ``(name, class)`` pairs."""
        return sorted(self._classes.items())

    def unregister(self, name: str) -> None:
        """Remove a name (for tests that register temporary components)."""
        self._classes.pop(name, None)


def load_builtins() -> None:
    """Import every module that registers a built-in component."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


_plugins_loaded = False


def load_plugins(group: str = PLUGIN_GROUP) -> list[str]:
    """Import every ``escx.plugins`` entry point; a failing one becomes a warning.

    Returns:
        The names of the entry points that loaded.
    """
    global _plugins_loaded
    loaded = []
    for entry in entry_points(group=group):
        try:
            entry.load()
        except Exception as error:  # noqa: BLE001 - any plug-in failure must not stop escx
            warnings.warn(
                f"escx plug-in {entry.name!r} ({entry.value}) failed to import and was skipped: "
                f"{type(error).__name__}: {error}",
                stacklevel=2,
            )
        else:
            loaded.append(entry.name)
    _plugins_loaded = True
    return loaded


def load_all() -> None:
    """Import the built-ins, then the plug-ins (once per process)."""
    load_builtins()
    if not _plugins_loaded:
        load_plugins()
