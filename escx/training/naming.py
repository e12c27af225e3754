"""Run names and tags derived from what a run is made of, so W&B groups ablations unaided.

``swin-csrvq`` for ESC-Base; overrides given on the command line are appended
(``swin-csrvq_pretrain_steps=0``) and config overlays become tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHORT_NAMES = {"CrossScaleRVQ": "csrvq", "ResidualVQ": "rvq", "ProductVQ": "pvq"}


def _class_name(spec: Any) -> str | None:
    path = spec.get("class_path") if hasattr(spec, "get") else None
    return str(path).rsplit(".", 1)[-1] if path else None


def component_names(codec_spec: Any) -> tuple[str, str]:
    """(backbone, quantizer) short names of a codec config (class_path / init_args tree).

    A codec that builds its own backbone from size arguments (DAC) is named by its class.
    """
    init = codec_spec.get("init_args", {}) if hasattr(codec_spec, "get") else {}
    codec = _class_name(codec_spec) or "STFTCodec"
    own = "SwinEncoder" if codec in ("STFTCodec", "ESC") else codec
    encoder = _class_name(init.get("encoder") or {}) or own
    quantizer = _class_name(init.get("quantizer") or {}) or "CrossScaleRVQ"
    backbone = encoder.removesuffix("Encoder").lower() or encoder.lower()
    return backbone, SHORT_NAMES.get(quantizer, quantizer.lower())


def overrides_from_argv(argv: list[str]) -> list[str]:
    """``key=value`` of every ``--model.*`` / ``--data.*`` / trainer step option in argv."""
    found = []
    it = iter(range(len(argv)))
    for i in it:
        arg = argv[i]
        if not arg.startswith("--") or arg.startswith(("--config", "--trainer.callbacks")):
            continue
        key, _, value = arg[2:].partition("=")
        if not value and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
        if key.startswith("model.") or key in ("trainer.max_steps", "seed_everything"):
            short = key.rsplit(".", 1)[-1]
            found.append(f"{short}={value}")
    return found


def run_identity(codec_spec: Any, argv: list[str]) -> tuple[str, list[str]]:
    """(name, tags) for a run: components, command-line overrides, overlay configs."""
    backbone, quantizer = component_names(codec_spec)
    overrides = overrides_from_argv(argv)
    name = "_".join([f"{backbone}-{quantizer}", *overrides])
    configs = [
        Path(argv[i + 1]).stem for i, arg in enumerate(argv[:-1]) if arg in ("--config", "-c")
    ]
    tags = [backbone, quantizer, *configs, *overrides]
    return name, list(dict.fromkeys(tags))
