"""Convert reference ESC checkpoints (yzGuu830/efficient-speech-codec) into escx codecs.

A reference checkpoint is a ``.pth`` holding the model's state dict under ``model_state_dict``
plus the ``config.yaml`` that built it (``model_name`` + a ``model:`` section of constructor
keyword arguments). The conversion rebuilds the same architecture from escx components
(:class:`~escx.codecs.stft_codec.STFTCodec` with Swin or conv backbones and CS-RVQ or bottleneck
product RVQ) and maps every tensor by name. It is strict: every reference tensor is used exactly
once and every escx parameter and persistent buffer is filled, so a converted codec computes
what the reference computes (docs/esc.md §2-§9). Constant buffers the reference stores but escx
recomputes (STFT windows, Swin relative-position indices) are skipped.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from escx.checkpoint import CheckpointError, safe_torch_load
from escx.codecs.stft_codec import STFTCodec

logger = logging.getLogger(__name__)


class ConversionError(ValueError):
    """A reference checkpoint or config cannot be converted."""


# Constructor defaults of the reference classes ESC / RVQCodecs (esc/models/codecs.py).
_DEFAULTS: dict[str, Any] = {
    "in_dim": 2, "in_freq": 192, "h_dims": [45, 72, 96, 144, 192, 384], "max_streams": 6,
    "win_len": 20, "hop_len": 5, "sr": 16000, "patch_size": [3, 2],
    "swin_heads": [3, 6, 12, 24, 24], "swin_depth": 2, "window_size": 4, "mlp_ratio": 4.0,
    "overlap": 2, "group_size": 3, "codebook_size": 1024, "codebook_dims": [8] * 6,
    "codebook_dim": 8, "num_rvqs": 6, "l2norm": True, "kernel_size": [5, 2], "conv_depth": 1,
    "backbone": None,
}  # fmt: skip
# model_name -> quantizer kind; the backbone comes from the `backbone` key, as in the reference.
_MODEL_NAMES = {"csvq+swinT": "csrvq", "csvq+conv": "csrvq", "rvq+swinT": "rvq", "rvq+conv": "rvq"}
_BACKBONES = ("transformer", "convolution")
# Buffers the reference saves but escx recomputes from the config.
_IGNORED = re.compile(r"^(ft|ift)\.window$|\.relative_position_index$")

# Reference -> escx name rules shared by all models; conv stages are mapped in _map_key.
_RULES = [
    (r"^decoder\.patch_deembed\.de_proj1\.", "decoder.patch_deembed.expand."),
    (r"^decoder\.patch_deembed\.de_proj2\.", "decoder.patch_deembed.out."),
    (r"^(encoder|decoder)\.(pre_nn|post_nn)\.swint_blocks\.", r"\1.\2.blocks."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.swint_blocks\.", r"\1.stages.\2.blocks."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.subsample\.norm\.", r"\1.stages.\2.scale.norm."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.subsample\.(down|up)\.", r"\1.stages.\2.scale.proj."),
    (r"^quantizers\.(\d+)\.vqs\.(\d+)\.embedding\.", r"quantizer.scales.\1.pq.codebooks.\2.0."),
    (r"^quantizers\.(\d+)\.down_projs\.", r"quantizer.scales.\1.pq.down."),
    (r"^quantizers\.(\d+)\.up_projs\.", r"quantizer.scales.\1.pq.up."),
    (r"^quantizers\.vqs\.(\d+)\.vqs\.(\d+)\.embedding\.", r"quantizer.pq.codebooks.\1.\2."),
    (r"^quantizers\.vqs\.(\d+)\.proj_down\.", r"quantizer.pq.down.\1."),
    (r"^quantizers\.vqs\.(\d+)\.proj_up\.", r"quantizer.pq.up.\1."),
]
_IDENTITY_PROJ = re.compile(r"^quantizer\.pq\.(down|up)\.\d+\.weight$")
_CONV_STAGE = re.compile(r"^(encoder|decoder)\.blocks\.(\d+)\.blocks\.(\d+)\.(.+)$")


def load_reference_checkpoint(
    path: str | Path, config_path: str | Path | None = None
) -> tuple[dict[str, Tensor], dict]:
    """Read a reference checkpoint and its config.

    Args:
        path: reference ``.pth``: a dict with ``model_state_dict`` (as the reference trainers
            save it) or a bare state dict.
        config_path: the reference ``config.yaml``; default ``config.yaml`` next to ``path``.

    Returns:
        ``(state_dict, config)``: the reference tensors and the parsed YAML mapping.

    Raises:
        ConversionError: for a missing or unreadable file or a file without a state dict.
    """
    path = Path(path)
    config_path = Path(config_path) if config_path is not None else path.parent / "config.yaml"
    if not path.is_file():
        raise ConversionError(f"reference checkpoint not found: {path}")
    if not config_path.is_file():
        raise ConversionError(
            f"reference config not found: {config_path}; pass the config.yaml that trained "
            "this checkpoint"
        )
    try:  # weights_only: a checkpoint must never run code when it is read
        blob = safe_torch_load(path, "reference checkpoint")
    except CheckpointError as error:
        raise ConversionError(str(error)) from None
    state = blob.get("model_state_dict", blob) if isinstance(blob, dict) else None
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, Tensor) for v in state.values())
    ):
        raise ConversionError(
            f"{path} holds no reference state dict (expected a dict of tensors or a "
            "'model_state_dict' entry)"
        )
    if all(k.startswith("module.") for k in state):  # saved from a DDP-wrapped model
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:
        config = yaml.safe_load(config_path.read_text())
    except UnicodeDecodeError:
        raise ConversionError(
            f"{config_path} is not a text file; pass the reference's config.yaml as --ref-config"
        ) from None
    except yaml.YAMLError as error:
        first = (str(error).splitlines() or ["parse error"])[0]
        raise ConversionError(f"{config_path} is not valid YAML: {first}") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{config_path} must hold a mapping (model_name, model: ...)")
    return dict(state), config


def _few(keys: list[str], n: int = 3) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _resolve_config(ref_config: dict, ref_state: dict[str, Tensor]) -> tuple[str, dict]:
    """Reference config (full YAML or the ``model`` section) -> (quantizer kind, model kwargs)."""
    if isinstance(ref_config.get("model"), dict):
        model_name, given = ref_config.get("model_name"), dict(ref_config["model"])
    else:
        given = dict(ref_config)
        model_name = given.pop("model_name", None)
    unknown = sorted(set(given) - set(_DEFAULTS))
    if unknown:
        raise ConversionError(f"unknown reference model config keys: {_few(unknown)}")
    has_rvq = any(k.startswith("quantizers.vqs.") for k in ref_state)
    kind = _MODEL_NAMES.get(model_name, "rvq" if has_rvq else "csrvq")
    if model_name is not None and model_name not in _MODEL_NAMES:
        raise ConversionError(
            f"unknown reference model_name {model_name!r}; expected one of {sorted(_MODEL_NAMES)}"
        )
    if (kind == "rvq") != has_rvq:
        raise ConversionError(
            f"model_name {model_name!r} does not match the checkpoint, whose quantizer "
            f"tensors are those of a {'RVQCodecs' if has_rvq else 'ESC (CS-RVQ)'} model"
        )
    cfg = {**_DEFAULTS, **given}
    if cfg["backbone"] is None:  # not in the config: trust the tensors
        conv = "encoder.pre_nn.conv.weight" in ref_state
        cfg["backbone"] = "convolution" if conv else "transformer"
    n_scales, streams = len(cfg["h_dims"]), cfg["max_streams"]
    if kind == "csrvq":
        # 9kbps_csvq_conv.yaml says `codebook_dim` for ESC's `codebook_dims` (docs/esc.md §16).
        dims = given.get("codebook_dims", given.get("codebook_dim", cfg["codebook_dims"]))
        cfg["codebook_dims"] = [dims] * streams if isinstance(dims, int) else list(dims)
    elif isinstance(cfg["codebook_dim"], (list, tuple)):  # 9kbps_rvq_conv.yaml (docs/esc.md §16)
        cfg["codebook_dim"] = cfg["codebook_dim"][0] if len(set(cfg["codebook_dim"])) == 1 else 0
    checks = [
        (cfg["backbone"] in _BACKBONES, f"backbone must be one of {_BACKBONES}"),
        (cfg["in_dim"] == 2, "in_dim must be 2 (real and imaginary STFT)"),
        # quantizer i is sized for H / 2**(max_streams - i) rows: one scale per stream
        (streams == n_scales, f"max_streams must equal len(h_dims) = {n_scales}"),
        (
            cfg["backbone"] != "transformer" or len(cfg["swin_heads"]) == n_scales - 1,
            f"swin_heads needs {n_scales - 1} entries for h_dims {cfg['h_dims']}",
        ),
        (
            cfg["backbone"] != "convolution" or list(cfg["kernel_size"]) == [5, 2],
            "only kernel_size [5, 2] converts: the reference residual units always use (5, 2)",
        ),
        (
            kind == "rvq" or len(cfg["codebook_dims"]) >= streams,
            "codebook_dims needs one entry per stream",
        ),
        (kind == "csrvq" or cfg["codebook_dim"] != 0, "RVQ codebook_dim must be one int"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConversionError(f"unsupported reference config: {message}")
    return kind, cfg


def _spec(class_path: str, **init_args: Any) -> dict:
    return {"class_path": class_path, "init_args": init_args}


def reference_codec_config(ref_config: dict, ref_state: dict[str, Tensor]) -> dict:
    """The escx codec config (``class_path``/``init_args``) equivalent to a reference config."""
    kind, cfg = _resolve_config(ref_config, ref_state)
    dims = [int(d) for d in cfg["h_dims"]]
    common = {"freq_bins": int(cfg["in_freq"]), "patch_size": [int(p) for p in cfg["patch_size"]]}
    if cfg["backbone"] == "transformer":
        heads = [int(h) for h in cfg["swin_heads"]]
        common |= {
            "depth": int(cfg["swin_depth"]),
            "window_size": int(cfg["window_size"]),
            "mlp_ratio": float(cfg["mlp_ratio"]),
        }
        # The reference decoder gets h_dims and swin_heads reversed (esc/models/codecs.py).
        encoder = _spec("escx.backbones.swin.SwinEncoder", dims=dims, heads=heads, **common)
        decoder = _spec(
            "escx.backbones.swin.SwinDecoder", dims=dims[::-1], heads=heads[::-1], **common
        )
    else:
        common |= {"kernel_size": [5, 2], "residual_units": int(cfg["conv_depth"])}
        encoder = _spec("escx.backbones.conv.ConvEncoder", dims=dims, **common)
        decoder = _spec("escx.backbones.conv.ConvDecoder", dims=dims[::-1], **common)
    vq = {
        "groups": int(cfg["group_size"]),
        "codebook_size": int(cfg["codebook_size"]),
        "frames_per_code": int(cfg["overlap"]),
        "l2norm": bool(cfg["l2norm"]),
    }
    if kind == "csrvq":
        cs_dims = [int(d) for d in cfg["codebook_dims"][: cfg["max_streams"]]]
        quantizer = _spec("escx.quantizers.cross_scale.CrossScaleRVQ", codebook_dims=cs_dims, **vq)
    else:
        n, dim = int(cfg["num_rvqs"]), int(cfg["codebook_dim"])
        quantizer = _spec(
            "escx.quantizers.residual.ResidualVQ", n_streams=n, codebook_dim=dim, **vq
        )
    sr = int(cfg["sr"])
    return _spec(
        "escx.codecs.stft_codec.STFTCodec",
        encoder=encoder,
        decoder=decoder,
        quantizer=quantizer,
        sample_rate=sr,
        n_fft=2 * (int(cfg["in_freq"]) - 1),
        win_length=int(cfg["win_len"] * sr * 1e-3),  # the reference's own arithmetic
        hop_length=int(cfg["hop_len"] * sr * 1e-3),
    )


def instantiate(spec: Any) -> Any:
    """Build an object tree from ``class_path``/``init_args`` dicts (dotted class paths)."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: instantiate(v) for k, v in spec.get("init_args", {}).items()})
    return spec


def _map_key(key: str, conv_depth: int) -> str | None:
    """escx name of a reference tensor, or None when no rule applies."""
    match = _CONV_STAGE.match(key)
    if match:  # ConvolutionLayer.blocks = [ResidualUnit x depth, scale conv, BN, PReLU]
        part, stage, index, rest = match.group(1), match.group(2), int(match.group(3)), match[4]
        if index < conv_depth:
            return f"{part}.stages.{stage}.units.{index}.{rest}"
        return f"{part}.stages.{stage}.scale.{index - conv_depth}.{rest}"
    if re.match(r"^(encoder\.patch_embed|(encoder|decoder)\.(pre_nn|post_nn)\.conv)\.", key):
        return key
    for pattern, repl in _RULES:
        new, count = re.subn(pattern, repl, key)
        if count:
            return new
    return None


def convert_reference_state_dict(
    ref_state: dict[str, Tensor], ref_config: dict
) -> tuple[STFTCodec, dict]:
    """Build the escx codec equivalent to a reference model and load its weights.

    Args:
        ref_state: the reference ``model_state_dict``.
        ref_config: the reference YAML (``model_name`` + ``model:``) or its ``model`` section
            (optionally with ``model_name``); without ``model_name`` the quantizer type (ESC
            CS-RVQ or RVQCodecs) is read from the tensor names.

    Returns:
        ``(codec, codec_config)``: an :class:`~escx.codecs.stft_codec.STFTCodec` in eval mode
        and the plain-dict ``class_path``/``init_args`` config that rebuilds it.

    Raises:
        ConversionError: unknown, duplicate, missing or wrongly shaped tensors, or an
            unsupported config.
    """
    if not isinstance(ref_config, dict):
        raise ConversionError("the reference config must be a mapping (model_name, model: ...)")
    codec_config = reference_codec_config(ref_config, ref_state)
    codec = instantiate(codec_config)
    target = codec.state_dict()
    enc = codec_config["init_args"]["encoder"]["init_args"]
    conv_depth = enc.get("residual_units", 0)
    new_state: dict[str, Tensor] = {}
    unknown, mismatched = [], []
    for key, value in ref_state.items():
        if _IGNORED.search(key):
            continue
        name = _map_key(key, conv_depth)
        if name not in target or name in new_state or not isinstance(value, Tensor):
            unknown.append(key)
        elif tuple(value.shape) != tuple(target[name].shape):
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target[name].shape)}")
        else:
            new_state[name] = value.detach().to(target[name].dtype)
    if unknown:
        raise ConversionError(
            f"{len(unknown)} reference tensors have no place in the escx model built from the "
            f"config: {_few(unknown)}; check that the config belongs to this checkpoint"
        )
    if mismatched:
        raise ConversionError(
            f"{len(mismatched)} reference tensors have the wrong shape for the config: "
            f"{_few(mismatched)}; check h_dims, heads and codebook settings"
        )
    for name, value in target.items():
        if name in new_state:
            continue
        if name.endswith(".initialized"):  # escx-only flag: reference codebooks are trained
            new_state[name] = torch.ones_like(value)
        elif _IDENTITY_PROJ.match(name) and value.shape[0] == value.shape[1]:
            # A reference RVQ slice whose size equals the codebook dim has no projection.
            new_state[name] = torch.eye(value.shape[0], dtype=value.dtype)
    missing = [n for n in target if n not in new_state]
    if missing:
        raise ConversionError(
            f"the checkpoint lacks {len(missing)} tensors the config needs (escx names): "
            f"{_few(missing)}; is the checkpoint truncated or from another model?"
        )
    codec.load_state_dict(new_state, strict=True)
    logger.info("converted %d reference tensors into %s", len(new_state), type(codec).__name__)
    return codec.eval(), codec_config
