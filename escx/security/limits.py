"""Bounds on what a config or checkpoint may make escx build, checked before it is built.

A YAML alias bomb (a few lines whose anchors expand to a billion values), a multi-megabyte list,
or a checkpoint whose pickle shares one list many times over all read in well under a second and
then hang or exhaust memory in whatever walks the tree next (jsonargparse deep-copies and checks
every value). escx's own configs are about a hundred values in under 2 KB, so:

* :data:`MAX_CONFIG_BYTES`: a config file or inline YAML value is at most 1 MiB (over 500 times
  the largest shipped config); refused before it is read;
* :data:`MAX_CONFIG_NODES`: a config tree holds at most 100,000 values *counting every alias
  expansion*, measured on the YAML node graph (shared nodes counted once per use, without
  expanding them) before any Python object is built;
* :data:`MAX_CONFIG_DEPTH`: containers nest at most 64 deep (escx's configs: under 10), which
  also keeps every walk over the tree within Python's recursion limit;
* :data:`MAX_LIST_ITEMS`: a list holds at most 1,000 items (escx's longest: 6). jsonargparse
  checks a typed list in time quadratic in its length: 1,000 floats take about a second, 10,000
  took 94 s here;
* the same count bounds trees read from checkpoints (``hyper_parameters``, ``escx``), whose
  shared or self-referencing containers are the pickle form of the same bomb.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 100_000
MAX_CONFIG_DEPTH = 64
MAX_LIST_ITEMS = 1_000

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SizeLimitError(ValueError):
    """A config or checkpoint tree is larger than escx accepts (one-line message)."""


def read_yaml_file(path: str | os.PathLike, what: str = "config file") -> Any:
    """Load a YAML file within the size and node bounds.

    Raises:
        SizeLimitError: the file or its expanded tree is too large.
        OSError: the file cannot be read.
        yaml.YAMLError: the file is not valid YAML.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise SizeLimitError(
            f"{path}: {what} of {size:,} bytes; escx reads configs of up to "
            f"{MAX_CONFIG_BYTES:,} bytes (a config lists what differs from the defaults)"
        )
    with open(path, "rb") as file:
        text = file.read(MAX_CONFIG_BYTES + 1)  # the file may have grown since stat()
    if len(text) > MAX_CONFIG_BYTES:
        raise SizeLimitError(f"{path}: {what} is over {MAX_CONFIG_BYTES:,} bytes")
    return load_yaml_text(text, str(path))


def load_yaml_text(text: str | bytes, where: str) -> Any:
    """``yaml.safe_load`` within the bounds: the node graph is composed and measured first.

    Raises:
        SizeLimitError: the text or its expanded tree is too large.
        yaml.YAMLError: not valid YAML.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise SizeLimitError(f"{where}: over {MAX_CONFIG_BYTES:,} bytes of YAML")
    node = yaml.compose(text, Loader=_LOADER)
    if node is not None:
        _Measure(_yaml_children, where, "the config").total(node)
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader (C or Python)


def check_tree_size(tree: Any, where: str) -> None:
    """Refuse a nested dict/list/tuple structure (read from a checkpoint) beyond the bounds,
    shared containers counted once per use, or one that contains itself.

    Raises:
        SizeLimitError: one line saying where and which bound.
    """
    _Measure(_python_children, where, "it").total(tree)


def _yaml_children(node: Any) -> tuple[Iterable[Any], int] | None:
    if isinstance(node, yaml.MappingNode):
        return itertools.chain.from_iterable(node.value), 0
    if isinstance(node, yaml.SequenceNode):
        return node.value, len(node.value)
    return None


def _python_children(value: Any) -> tuple[Iterable[Any], int] | None:
    if isinstance(value, dict):
        return itertools.chain.from_iterable(value.items()), 0
    if isinstance(value, (list, tuple, set, frozenset)):
        return value, len(value)
    return None


class _Measure:
    """Counts the values of a tree whose containers may be shared (YAML aliases, pickle memo
    references), each shared container once per use but walked only once."""

    def __init__(self, children: Any, where: str, subject: str) -> None:
        self.children, self.where, self.subject = children, where, subject
        self.sizes: dict[int, int] = {}
        self.active: set[int] = set()

    def total(self, node: Any, depth: int = 0) -> int:
        found = self.children(node)
        if found is None:
            return 1
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        items, length = found
        if key in self.active:
            self._refuse("contains itself (a recursive alias or reference)")
        if depth > MAX_CONFIG_DEPTH:
            self._refuse(f"nests deeper than {MAX_CONFIG_DEPTH} levels")
        if length > MAX_LIST_ITEMS:
            self._refuse(f"holds a list of {length:,} items (at most {MAX_LIST_ITEMS:,})")
        self.active.add(key)
        count = 1
        for child in items:
            count += self.total(child, depth + 1)
            if count > MAX_CONFIG_NODES:
                self._refuse(
                    f"expands to more than {MAX_CONFIG_NODES:,} values (shared parts such as "
                    "YAML aliases count once per use)"
                )
        self.active.discard(key)
        self.sizes[key] = count
        return count

    def _refuse(self, why: str) -> None:
        raise SizeLimitError(f"{self.where}: {self.subject} {why}; escx refuses it before use")
