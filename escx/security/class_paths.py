"""Class paths in configs and checkpoints choose classes, never imports.

jsonargparse (and so LightningCLI and :func:`escx.build_codec`) imports whatever dotted path a
``class_path`` names, and ``python -m escx.cli`` puts the current folder first on ``sys.path``: a
config or checkpoint naming ``evil_mod.Foo`` next to an ``evil_mod.py`` would run that file. The
rule escx applies to every class path it reads (``--config`` files, command-line options,
``escx.codec_config`` of checkpoints):

* a bare name (``STFTCodec``, ``CSVLogger``) is looked up among the classes already loaded: the
  registries for components, the loaded subclasses otherwise. Nothing is imported;
* a dotted path must lie inside a trusted package, checked on the text *before* any import:
  :data:`TRUSTED_PACKAGES`, the modules of registered components, the packages of the declared
  ``escx.plugins`` entry points, and the packages listed in ``$ESCX_TRUSTED_MODULES``
  (comma-separated, for a user's own callbacks or loggers);
* everything else is refused in one line.

:func:`import_policy` gives jsonargparse the same allowlist, so a class path at a key escx did
not check (any ``Callable`` or class-typed argument) is refused by jsonargparse itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Packages whose classes a run configures by dotted path: escx itself, optimizers and LR
# schedulers, modules, and Lightning's loggers, callbacks, plug-ins, strategies and profilers.
# Not all of torch or lightning: importing or calling arbitrary functions there is not needed.
TRUSTED_PACKAGES = (
    "escx",
    "torch.optim",
    "torch.nn",
    "lightning.pytorch.loggers",
    "lightning.pytorch.callbacks",
    "lightning.pytorch.plugins",
    "lightning.pytorch.strategies",
    "lightning.pytorch.profilers",
    "lightning.pytorch.accelerators",
    "lightning.fabric.plugins",
    "lightning.fabric.accelerators",
    "lightning.fabric.strategies",
)
TRUST_ENV = "ESCX_TRUSTED_MODULES"
PLUGIN_GROUP = "escx.plugins"


class UntrustedClassPath(ValueError):
    """A class path names a module outside the trusted packages (one-line message)."""


def _is_dotted_name(text: str) -> bool:
    parts = text.split(".")
    return len(parts) > 1 and all(part.isidentifier() for part in parts)


def _from_environment() -> list[str]:
    entries = [e.strip() for e in os.environ.get(TRUST_ENV, "").split(",") if e.strip()]
    for entry in entries:
        if not all(part.isidentifier() for part in entry.split(".")):
            raise UntrustedClassPath(
                f"${TRUST_ENV}: {entry!r} is not a module name; list packages separated by commas"
            )
    # jsonargparse refuses to allow itself (a value could then change its import policy).
    return [e for e in entries if e.split(".")[0] != "jsonargparse"]


def _plugin_packages() -> list[str]:
    from importlib.metadata import entry_points

    names = []
    for entry in entry_points(group=PLUGIN_GROUP):
        top = entry.value.split(":", 1)[0].strip().split(".")[0]
        if top.isidentifier():
            names.append(top)
    return names


def _registered_modules() -> list[str]:
    from escx.config import registries

    return [cls.__module__ for registry in registries().values() for _, cls in registry.items()]


def trusted_prefixes() -> tuple[str, ...]:
    """Every package a dotted class path may name (see the module docstring)."""
    found = [*TRUSTED_PACKAGES, *_registered_modules(), *_plugin_packages(), *_from_environment()]
    return tuple(dict.fromkeys(found))


def is_trusted(dotted: str, prefixes: tuple[str, ...] | None = None) -> bool:
    """Whether ``dotted`` lies inside a trusted package (whole name parts, not string prefixes:
    ``escx_evil.X`` is not inside ``escx``)."""
    prefixes = trusted_prefixes() if prefixes is None else prefixes
    return any(dotted == p or dotted.startswith(p + ".") for p in prefixes)


def untrusted_message(path: str, where: str) -> str:
    return (
        f"{where}: class path {path!r} is outside the packages escx imports classes from (escx, "
        "torch.optim, torch.nn, Lightning's loggers/callbacks/plugins, escx plug-ins); name a "
        f"registered component (escx list) or add its package to ${TRUST_ENV}"
    )


def check_class_path(value: str, where: str, prefixes: tuple[str, ...] | None = None) -> None:
    """Refuse a dotted class path outside the trusted packages; bare names pass (they resolve
    among loaded classes only).

    Raises:
        UntrustedClassPath: one line naming the path and what to do instead.
    """
    if "." not in value:
        return
    if not _is_dotted_name(value) or not is_trusted(value, prefixes):
        raise UntrustedClassPath(untrusted_message(value, where))


def resolve_loaded(dotted: str) -> object | None:
    """The object a dotted path names among modules already imported, or None; never imports
    a module (an attribute of a loaded module may be a lazy re-export of a trusted one)."""
    if not _is_dotted_name(dotted):
        return None
    module_name, _, attr = dotted.rpartition(".")
    module = sys.modules.get(module_name)
    if module is None:
        return None
    try:
        return getattr(module, attr, None)
    except ImportError:
        return None


@contextmanager
def import_policy() -> Iterator[None]:
    """Let jsonargparse import only from the trusted packages while the block runs.

    The same allowlist as :func:`check_class_path`, enforced by jsonargparse at the point of
    import (its ``import_path_allowlist``), as a second line behind escx's own checks. The
    previous setting is restored afterwards, so other users of jsonargparse in the same process
    are not affected.
    """
    try:
        from jsonargparse import _common, set_parsing_settings

        settings = _common.parsing_settings
        saved = (dict(settings["import_path_verdicts"]), settings["import_paths_enforced"])
    except (ImportError, AttributeError, KeyError):  # an older jsonargparse: escx's checks only
        yield
        return
    set_parsing_settings(import_path_denylist=["*"], import_path_allowlist=list(trusted_prefixes()))
    try:
        yield
    finally:
        settings["import_path_verdicts"], settings["import_paths_enforced"] = saved
