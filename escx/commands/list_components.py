"""``escx list [KIND]``: registered components with their one-line docs."""

from __future__ import annotations

import inspect

from escx.commands.common import ArgumentParser, CommandError, say
from escx.config import registries


def summary(cls: type) -> str:
    """First line of a class docstring."""
    doc = inspect.getdoc(cls) or ""
    return doc.splitlines()[0] if doc else "(no description)"


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="escx list", description="List registered components.")
    regs = registries()
    parser.add_argument("kind", nargs="?", help=f"one of: {', '.join(regs)}")
    args = parser.parse_args(argv)
    kinds = list(regs)
    if args.kind is not None:
        kind = args.kind.rstrip("s") if args.kind.rstrip("s") in regs else args.kind
        if kind not in regs:
            raise CommandError(f"unknown kind {args.kind!r}; choose one of: {', '.join(kinds)}")
        kinds = [kind]
    for kind in kinds:
        say(f"{kind}s:")
        items = regs[kind].items()
        width = max((len(name) for name, _ in items), default=0)
        for name, cls in items:
            say(f"  {name:<{width}}  {summary(cls)}")
    return 0
