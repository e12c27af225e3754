"""Build components from YAML or dicts, with registry-aware errors.

Configs use LightningCLI's form (``class_path`` + ``init_args``) and are parsed by jsonargparse,
so ``escx.build_codec(...)`` and ``escx fit`` resolve and merge configs identically: stacked files
merge left to right, a short class name resolves through the registries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from escx.registry import load_all

# Config keys whose ``class_path`` names a registered component, and the registry kind.
COMPONENT_KEYS = {
    "codec": "codec",
    "encoder": "encoder",
    "decoder": "decoder",
    "quantizer": "quantizer",
    "discriminators": "discriminator",
}


class ConfigError(ValueError):
    """A config file is missing, unreadable or names an unknown component."""


def registries() -> dict[str, Any]:
    """Every registry by kind, built-ins and plug-ins loaded."""
    load_all()
    from escx.backbones.base import DECODERS, ENCODERS
    from escx.codecs.base import CODECS
    from escx.discriminators.base import DISCRIMINATORS
    from escx.quantizers.base import QUANTIZERS
    from escx.quantizers.kinds import CODEBOOKS

    return {
        "codec": CODECS,
        "encoder": ENCODERS,
        "decoder": DECODERS,
        "quantizer": QUANTIZERS,
        "codebook": CODEBOOKS,
        "discriminator": DISCRIMINATORS,
    }


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping; one-line ConfigError when missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else "parse error"
        raise ConfigError(f"{path} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def check_class_names(config: Any, where: str = "config") -> None:
    """Raise ConfigError for the first unknown registered-component name in a config tree."""
    regs = registries()
    _walk(config, None, where, regs)


def _walk(node: Any, kind: str | None, where: str, regs: dict) -> None:
    if isinstance(node, dict):
        name = node.get("class_path")
        if kind is not None and isinstance(name, str):
            registry = regs[kind]
            if name not in registry and not _importable(name):
                raise ConfigError(f"{where}: {registry.unknown_message(name)}")
        for key, value in node.items():
            child_kind = COMPONENT_KEYS.get(key)
            if key == "init_args":
                child_kind = None
            _walk(value, child_kind, f"{where}", regs)
    elif isinstance(node, list):
        for item in node:
            _walk(item, kind, where, regs)


def _importable(dotted: str) -> bool:
    if "." not in dotted:
        return False
    module, _, attr = dotted.rpartition(".")
    try:
        import importlib

        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def codec_section(config: dict) -> dict | None:
    """The codec spec inside a full experiment config (``model.codec``) or a bare codec config."""
    if "model" in config and isinstance(config["model"], dict):
        section = config["model"].get("init_args", config["model"])
        if "codec" in section:
            return section["codec"]
    if "codec" in config:
        return config["codec"]
    if "class_path" in config:
        return config
    return None


def _parse_codec(sources: tuple[str | Path | dict, ...]):
    """Parse stacked codec configs with jsonargparse; returns (parser, namespace or None)."""
    from jsonargparse import ArgumentParser

    from escx.codecs.base import Codec

    registries()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--codec", type=Codec)
    namespace = None
    for source in sources:
        config = source if isinstance(source, dict) else load_yaml(source)
        label = "config" if isinstance(source, dict) else str(source)
        section = codec_section(config)
        if section is None:
            continue
        check_class_names({"codec": section}, label)
        try:
            namespace = parser.parse_object({"codec": section}, namespace=namespace)
        except Exception as error:  # jsonargparse reports type errors as multi-line text
            detail = " ".join(str(error).split())
            raise ConfigError(f"{label}: invalid codec config: {detail}") from None
    return parser, namespace


def build_codec(*sources: str | Path | dict):
    """Instantiate a codec from stacked experiment YAMLs or dicts (later ones override).

    With no source (or none holding a codec) this is ESC-Base.

    Example:
        ``build_codec("experiments/esc.yaml", "experiments/ablations/rvq-conv.yaml")``
    """
    parser, namespace = _parse_codec(sources)
    if namespace is None:
        from escx.codecs.stft_codec import STFTCodec

        return STFTCodec()
    codec = parser.instantiate(namespace).codec
    # Kept so that checkpoints of this codec can rebuild it (escx.load_codec).
    codec.escx_config = yaml.safe_load(parser.dump(namespace))["codec"]
    return codec


def codec_config_dict(*sources: str | Path | dict) -> dict:
    """The resolved codec config (``class_path``/``init_args`` with every default filled)."""
    parser, namespace = _parse_codec(sources)
    return yaml.safe_load(parser.dump(namespace))["codec"] if namespace else {}
