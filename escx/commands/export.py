"""``escx export --model CKPT -o DIR``: a trained codec -> ONNX graphs for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

from escx.commands.common import ArgumentParser, CommandError, say

# Files of --check-data compared, by default, and at most (each is coded at every bitrate twice).
DEFAULT_CHECK_FILES, MAX_CHECK_FILES = 8, 1000


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="escx export",
        description="Export a trained codec to ONNX: DIR/encoder.onnx (audio -> codes of every "
        "stream), DIR/decoder.onnx (codes of the first k streams -> audio) and "
        "DIR/escx-onnx.json (how to call them). The graphs are checked against escx afterwards. "
        "See docs/deploy.md.",
    )
    parser.add_argument("--model", required=True, help="checkpoint from escx fit or escx convert")
    parser.add_argument("-o", "--output", required=True, help="folder to write (new, empty or "
                        "an earlier export, which is replaced)")  # fmt: skip
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write encoder-int8.onnx and decoder-int8.onnx: the linear layers dynamically "
        "quantized to int8 (the quantizer's projections and the codebook search stay fp32)",
    )
    parser.add_argument(
        "--check-data",
        default=None,
        metavar="DIR",
        help="also compare with escx on the first --check-files audio files of DIR (real "
        "speech); by default the check uses synthetic test signals",
    )
    parser.add_argument("--check-files", type=int, default=DEFAULT_CHECK_FILES)
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with escx")
    args = parser.parse_args(argv)
    if not 1 <= args.check_files <= MAX_CHECK_FILES:
        raise CommandError(f"--check-files must be in 1..{MAX_CHECK_FILES}")
    if not Path(args.model).is_file():
        raise CommandError(f"--model {args.model}: no such checkpoint")
    from escx.export.writer import check_export_target

    check_export_target(args.output)
    files = _check_files(args.check_data, args.check_files) if args.check_data else None

    from escx.api import load_codec
    from escx.export.graphs import UnsupportedCodec
    from escx.export.writer import export_codec

    handle = load_codec(args.model)
    name = Path(args.model).name
    say(f"exporting {name}: tracing and translating two graphs (a few minutes on a CPU) ...")
    try:
        result = export_codec(handle.codec, args.output, handle.fingerprint, name, args.int8)
    except UnsupportedCodec as error:
        raise CommandError(f"cannot export {args.model}: {error}") from None
    except ImportError as error:
        raise CommandError(str(error)) from None
    sizes = ", ".join(
        f"{file} {size / 2**20:.2f} MiB" for file, size in sorted(result.sizes.items())
    )
    codec = handle.codec
    say(
        f"exported {name} ({type(codec).__name__}, {codec.max_streams} streams, "
        f"{handle.kbps(1):g}-{handle.max_kbps:g} kbps) to {result.folder} in "
        f"{result.seconds:.0f} s: {sizes}"
    )
    if args.no_check:
        return 0
    _check(handle, result.folder, files, args.int8)
    return 0


def _check_files(folder: str, count: int) -> list[Path]:
    from escx.audio import find_audio_files

    if not Path(folder).is_dir():
        raise CommandError(f"--check-data {folder}: no such folder")
    files = find_audio_files(folder)[:count]
    if not files:
        raise CommandError(f"--check-data {folder}: no audio files in it")
    return files


def _check(handle, folder: Path, files: list[Path] | None, int8: bool) -> None:
    from importlib.util import find_spec

    if find_spec("onnxruntime") is None:
        say("not checked: onnxruntime is not installed (pip install 'escx[export]')")
        return
    from escx.export.check import compare, self_check
    from escx.export.runtime import OnnxCodec

    onnx = OnnxCodec(folder)
    if files is None:
        say(f"check (synthetic signals): {self_check(handle.codec, onnx).summary()}")
        return
    from escx.audio import read_audio

    clips = [read_audio(path, handle.sample_rate)[0].numpy() for path in files]
    result = compare(handle.codec, onnx, clips)
    say(f"check ({len(files)} files of real audio): {result.summary()}")
    if int8:
        from escx.export.quality import cost_table, int8_cost

        rows = int8_cost(onnx, OnnxCodec(folder, int8=True), clips)
        say(f"int8 against fp32 on {len(files)} files (each coded end to end by each):")
        say(cost_table(rows))
