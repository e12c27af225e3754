"""The ``escx`` console script.

Training subcommands (``fit``, ``validate``, ``test``) go through LightningCLI; codec tools
(``list``, ``convert``, ``compress``, ...) are plain argparse subcommands. Every error a user can
cause is reported as one line with exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from importlib import import_module

from escx.commands.common import EXIT_BAD_INPUT, EXIT_SIGINT, CommandError, fail

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")

# name -> (module with main(argv), one-line help)
TOOL_COMMANDS = {
    "list": ("escx.commands.list_components", "list registered components"),
    "convert": ("escx.commands.convert", "convert a reference ESC checkpoint"),
    "compress": ("escx.commands.compress", "audio files -> .escx bitstreams"),
    "decompress": ("escx.commands.decompress", ".escx bitstreams -> wav files"),
    "truncate": ("escx.commands.truncate", "drop streams from an .escx file"),
    "eval": ("escx.commands.evaluate", "evaluate a codec per bitrate"),
    "sweep": ("escx.commands.sweep", "run a W&B sweep file locally"),
    "ablation": ("escx.commands.ablation", "train and compare the variants of a study"),
    "bench": ("escx.commands.bench", "measure codec speed, throughput and memory"),
    "export": ("escx.commands.export", "export a codec to ONNX (encoder and decoder graphs)"),
    "data": ("escx.commands.data", "write WebDataset shards or a data index of a corpus"),
}


def usage() -> str:
    lines = ["usage: escx COMMAND [ARGS]", "", "training (LightningCLI):"]
    lines += [
        f"  {name:<11} {name} a codec (escx {name} --help)" for name in LIGHTNING_COMMANDS[:3]
    ]
    lines.append("tools:")
    available = {n: v for n, v in TOOL_COMMANDS.items() if _available(v[0])}
    lines += [f"  {name:<11} {text}" for name, (_, text) in available.items()]
    return "\n".join(lines)


# jsonargparse wraps a constructor's error in "Does not validate against any of the Union
# subtypes" once per nesting level, with the real message as one of the "- " lines below.
_UNION_WRAPPER = "Does not validate against any of the Union subtypes"
_UNION_NOISE = (_UNION_WRAPPER, "Expected a <class")


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    if not text:
        return type(error).__name__
    lines = text.splitlines()
    if lines[0].startswith(_UNION_WRAPPER):
        causes = [line.strip()[2:] for line in lines if line.strip().startswith("- ")]
        causes = [cause for cause in causes if not cause.startswith(_UNION_NOISE)]
        if causes:
            return causes[0]
    return lines[0]


def _available(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else EXIT_BAD_INPUT
    command, rest = argv[0], argv[1:]
    if command in ("-V", "--version"):
        from escx import __version__

        print(__version__)
        return 0
    from escx.perf import tune_cpu_allocator

    if command != "bench":  # the bench measures the default allocator first, then tunes it
        tune_cpu_allocator()  # large activations reuse freed memory instead of page faults
    try:
        if command in LIGHTNING_COMMANDS:
            from escx.training.cli import run_lightning

            return run_lightning(argv)
        if command not in TOOL_COMMANDS or not _available(TOOL_COMMANDS[command][0]):
            return fail(f"unknown command {command!r}\n{usage()}")
        return import_module(TOOL_COMMANDS[command][0]).main(rest)
    except CommandError as error:
        fail(_one_line(error))
        return error.code
    except (ValueError, OSError) as error:
        return fail(_one_line(error))
    except FloatingPointError as error:  # a non-finite loss: the run stopped, not bad input
        fail(_one_line(error))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("escx: interrupted\n")
        return EXIT_SIGINT


if __name__ == "__main__":
    raise SystemExit(main())
