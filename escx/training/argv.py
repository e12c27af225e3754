"""Checks of ``escx fit|validate|test`` arguments made before LightningCLI parses them.

Config files are read within escx's size bounds and their class names checked (registered
components, trusted packages: :mod:`escx.security`) before jsonargparse reads them; the same
goes for class names given as options and for inline YAML/JSON values, so a typo gets one "did
you mean" line and an untrusted class path is refused before anything is imported.
"""

from __future__ import annotations

import os
import re
from typing import Any

from escx.config import CLASS_KEYS, COMPONENT_KEYS, ConfigError, check_class_names, load_yaml
from escx.security import SizeLimitError, load_yaml_text


def option(argv: list[str], name: str) -> str | None:
    """The last value given for option ``name`` (``--name VALUE`` or ``--name=VALUE``)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def config_files(argv: list[str]) -> list[str]:
    """The ``--config``/``-c`` values, in order."""
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def check_arguments(argv: list[str]) -> None:
    """Read every config file within bounds and check every class they and the options name.

    Raises:
        ConfigError: one line for the first missing, oversized or malformed config, or unknown
            or untrusted class.
    """
    for path in config_files(argv):
        check_class_names(load_yaml(path), path)
    for tree in _options_as_trees(argv):
        check_class_names(tree, "command line")


def _options_as_trees(argv: list[str]) -> list[dict]:
    """Options that name classes (``--model.codec.init_args.quantizer CrossScaleRVQ``,
    ``--trainer.callbacks+=X``, ``...class_path=X``) and inline YAML values, each as a config
    tree whose keys are the option's, so :func:`check_class_names` sees them as in a file."""
    trees = []
    for i, arg in enumerate(argv):
        if not arg.startswith("--") or arg.startswith("--config"):
            continue
        key, has_value, value = arg[2:].partition("=")
        if not has_value:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                continue
            value = argv[i + 1]
        parts = key.removesuffix("+").split(".")
        leaf = _inline_yaml(value, key)
        if leaf is None:
            if parts[-1] == "class_path":
                parts = parts[:-1]
            names_class = parts and (parts[-1] in COMPONENT_KEYS or parts[-1] in CLASS_KEYS)
            if not names_class or not _looks_like_class_name(value):
                continue
            leaf = {"class_path": value}
        tree: Any = leaf
        for part in reversed(parts):
            tree = {part: tree}
        trees.append(tree)
    return trees


def _inline_yaml(value: str, key: str) -> Any:
    """A YAML/JSON mapping or list given inline, read within the size bounds; else None."""
    if not value.lstrip().startswith(("{", "[")):
        return None
    try:
        return load_yaml_text(value, f"--{key}")
    except SizeLimitError as error:
        raise ConfigError(str(error)) from None
    except Exception:  # noqa: BLE001 - not YAML: jsonargparse reports it in its own words
        return None


def _looks_like_class_name(value: str) -> bool:
    """A bare or dotted class name, not a YAML/JSON value, a file path or null."""
    if value.lower() in ("null", "none") or value.endswith((".yaml", ".yml", ".json")):
        return False
    return re.fullmatch(r"[A-Za-z_][\w.]*", value) is not None and not os.path.exists(value)
