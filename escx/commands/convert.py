"""``escx convert REF.pth [--ref-config config.yaml] -o model.ckpt``: import a reference model.

Reads a checkpoint of the reference ESC implementation with the ``config.yaml`` that built it,
rebuilds the same model from escx components (:mod:`escx.convert`) and writes the checkpoint
format that trained models use, so ``escx compress --model model.ckpt`` works the same for both.
"""

from __future__ import annotations

from pathlib import Path

from escx.commands.common import ArgumentParser
from escx.commands.compress import summary


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="escx convert",
        description="Convert a reference ESC checkpoint into an escx codec checkpoint.",
    )
    parser.add_argument("checkpoint", metavar="REF.pth", help="reference checkpoint")
    parser.add_argument(
        "--ref-config", default=None, help="reference config.yaml (default: beside REF.pth)"
    )
    parser.add_argument("-o", "--output", required=True, help="escx checkpoint to write")
    args = parser.parse_args(argv)

    from escx.api import save_codec_checkpoint
    from escx.audio import AUDIO_EXTENSIONS
    from escx.bitstream import fingerprint_state_dict
    from escx.convert import convert_reference_state_dict, load_reference_checkpoint
    from escx.files.targets import check_not_input, check_output_path, check_output_suffix

    output = Path(args.output)
    # Any checkpoint name works (.ckpt, .pt, ...), but not one that scans take for audio or codes.
    refused = (*AUDIO_EXTENSIONS, ".escx")
    check_output_suffix(output, "escx convert writes a checkpoint", refused=refused)
    config_file = args.ref_config or Path(args.checkpoint).parent / "config.yaml"
    for source in (args.checkpoint, config_file):
        check_not_input(source, output)
    check_output_path(output)
    ref_state, ref_config = load_reference_checkpoint(args.checkpoint, args.ref_config)
    codec, codec_config = convert_reference_state_dict(ref_state, ref_config)
    save_codec_checkpoint(codec, codec_config, output, converted_from=Path(args.checkpoint).name)
    params = sum(p.numel() for p in codec.parameters())
    top = codec.bitrate(codec.max_streams) / 1000
    fingerprint = fingerprint_state_dict(codec.state_dict()).hex()
    summary(
        f"converted {args.checkpoint}: {params:,} parameters, {codec.max_streams} streams "
        f"(up to {top:g} kbps), fingerprint {fingerprint} -> {output}",
        output,
    )
    return 0
