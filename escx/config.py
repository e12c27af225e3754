"""Build components from YAML or dicts, with registry-aware errors.

Configs use LightningCLI's form (``class_path`` + ``init_args``) and are parsed by jsonargparse,
so ``escx.build_codec(...)`` and ``escx fit`` resolve and merge configs identically: stacked files
merge left to right, a short class name resolves through the registries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from escx.registry import RegistryError, load_all
from escx.security import (
    SizeLimitError,
    UntrustedClassPath,
    check_class_path,
    check_tree_size,
    import_policy,
    read_yaml_file,
    trusted_prefixes,
)

# Config keys whose ``class_path`` names a registered component, and the registry kind.
COMPONENT_KEYS = {
    "codec": "codec",
    "encoder": "encoder",
    "decoder": "decoder",
    "quantizer": "quantizer",
    "discriminators": "discriminator",
}


# Other keys whose values name classes (a string, or ``class_path`` in a mapping): their dotted
# paths must lie in a trusted package (escx.security.class_paths); bare names pass, since
# jsonargparse resolves them among the classes already loaded and imports nothing.
CLASS_KEYS = frozenset(
    {"logger", "callbacks", "plugins", "optimizer", "scheduler", "disc_optimizer", "profiler"}
)


class ConfigError(ValueError):
    """A config file is missing, unreadable, too large or names an unknown or untrusted class."""


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
    """Read a YAML mapping within escx's size bounds; one-line ConfigError when missing,
    malformed or too large (see :mod:`escx.security.limits`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = read_yaml_file(path) or {}
    except SizeLimitError as error:
        raise ConfigError(str(error)) from None
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else "parse error"
        raise ConfigError(f"{path} is not valid YAML: {first}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return data


def check_class_names(config: Any, where: str = "config") -> Any:
    """Check every class a config tree names, before anything is imported.

    Components (``codec``, ``encoder``, ``decoder``, ``quantizer``, ``discriminators``) must be
    registered; a dotted path to one is rewritten to the registered class's own module path, so
    ``evil_mod.STFTCodec`` cannot make jsonargparse import ``evil_mod``. Any other
    ``class_path``, and the classes named at :data:`CLASS_KEYS`, must be bare names or lie in a
    trusted package (:mod:`escx.security.class_paths`).

    Returns:
        The tree with component class paths rewritten (the input is not changed).

    Raises:
        ConfigError: one line naming the first unknown or untrusted class.
    """
    regs = registries()
    try:
        prefixes = trusted_prefixes()
        return _walk(config, None, where, regs, prefixes)
    except UntrustedClassPath as error:
        raise ConfigError(str(error)) from None


def _walk(node: Any, kind: str | None, where: str, regs: dict, prefixes: tuple) -> Any:
    """``kind``: the registry kind of a component key, "class" for :data:`CLASS_KEYS`."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "class_path" and isinstance(value, str):
                out[key] = _class(value, kind or "class", where, regs, prefixes)
                continue
            child = COMPONENT_KEYS.get(key) or ("class" if key in CLASS_KEYS else None)
            out[key] = _walk(value, None if key == "init_args" else child, where, regs, prefixes)
        return out
    if isinstance(node, list):
        return [_walk(item, kind, where, regs, prefixes) for item in node]
    if isinstance(node, str) and kind is not None:  # `quantizer: CrossScaleRVQ` shorthand
        return _class(node, kind, where, regs, prefixes)
    return node


def _class(name: str, kind: str, where: str, regs: dict, prefixes: tuple) -> str:
    if kind == "class":
        check_class_path(name, where, prefixes)
        return name
    registry = regs[kind]
    if "." in name:
        check_class_path(name, where, prefixes)
    try:
        cls = registry.get(name)
    except RegistryError:
        raise ConfigError(f"{where}: {registry.unknown_message(name)}") from None
    return name if "." not in name else f"{cls.__module__}.{cls.__qualname__}"


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
        try:
            check_tree_size(config, label)  # a dict may come from a checkpoint
        except SizeLimitError as error:
            raise ConfigError(str(error)) from None
        section = codec_section(config)
        if section is None:
            continue
        checked = check_class_names({"codec": section}, label)
        try:
            with import_policy():
                namespace = parser.parse_object(checked, namespace=namespace)
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
    with import_policy():
        codec = parser.instantiate(namespace).codec
    # Kept so that checkpoints of this codec can rebuild it (escx.load_codec).
    codec.escx_config = yaml.safe_load(parser.dump(namespace))["codec"]
    return codec


def codec_config_dict(*sources: str | Path | dict) -> dict:
    """The resolved codec config (``class_path``/``init_args`` with every default filled)."""
    parser, namespace = _parse_codec(sources)
    return yaml.safe_load(parser.dump(namespace))["codec"] if namespace else {}
