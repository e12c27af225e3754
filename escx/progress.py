"""Progress over a known number of items on stderr: a bar in a terminal, plain lines elsewhere.

A tqdm bar redraws one line with carriage returns, which fills a log file or a CI page with one
unreadable line; when stderr is not a terminal, progress is a short line every tenth of the
items (and at the last one) instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(
    items: Iterable[T], desc: str, unit: str = "file", enabled: bool = True
) -> Iterator[T]:
    """Yield ``items`` while showing how many are done on stderr.

    Args:
        items: what to iterate over (a sized collection, so the total is known).
        desc: the label before the count (e.g. ``eval after training``).
        unit: what one item is, for the count.
        enabled: False yields the items silently.
    """
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, unit=unit, file=sys.stderr)
        return
    total = len(items) if isinstance(items, Sized) else None
    every = max(1, (total or 10) // 10)
    sys.stderr.write(f"{desc}: 0{f'/{total}' if total else ''} {unit}s\n")
    for done, item in enumerate(items, start=1):
        yield item
        if done % every == 0 or done == total:
            of = f"/{total}" if total else ""
            sys.stderr.write(f"{desc}: {done}{of} {unit}s\n")
            sys.stderr.flush()
