"""Shared plumbing for subcommands: one-line errors and exit code 2 for bad input."""

from __future__ import annotations

import argparse
import sys

EXIT_BAD_INPUT = 2
# A run stopped by Ctrl-C or SIGTERM exits as the shell reports these signals (128 + signal).
EXIT_SIGINT, EXIT_SIGTERM = 128 + 2, 128 + 15


class CommandError(Exception):
    """A user-facing error: printed as one line; exit code 2 (bad input) unless ``code`` says.

    Args:
        message: the one-line message.
        code: the process exit code.
    """

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line and exits with code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_BAD_INPUT)


def fail(message: str) -> int:
    """Print a one-line error to stderr and return the bad-input exit code."""
    sys.stderr.write(f"escx: error: {message}\n")
    return EXIT_BAD_INPUT


def say(text: str = "", end: str = "\n") -> None:
    """Write a command's result for the user to stdout (flushed, so progress shows at once).

    Library code logs; commands report through this one function.
    """
    sys.stdout.write(text + end)
    sys.stdout.flush()


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision fp32|bf16``: the codec's inference precision (see ``Codec``)."""
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="inference precision: fp32 (default, exact) or bf16 (faster on CPUs with "
        "AVX512-BF16/AMX and on GPUs; codes may differ from fp32's)",
    )


def add_model_metrics_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-model-metrics``: skip the model-based metrics of the ``eval`` extra."""
    parser.add_argument(
        "--no-model-metrics",
        action="store_true",
        help="skip DNSMOS, ViSQOL and speaker similarity (about 1.5 s per clip and bitrate)",
    )
