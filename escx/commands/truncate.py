"""``escx truncate IN.escx --kbps K -o OUT.escx``: lower the bitrate without re-encoding.

The coarsest streams come first in an ``.escx`` file, so keeping ``k`` streams is a header rewrite
plus a cut (docs/bitstream.md); no model is needed. The header stores no frame rate, so a
bitrate is mapped to a stream count through the file's own frames per second.
"""

from __future__ import annotations

import math
from pathlib import Path

from escx.commands.common import ArgumentParser, CommandError
from escx.commands.compress import summary


def streams_for_kbps(header, kbps: float) -> int:
    """Stream count of a file header that gives ``kbps``.

    The frame hop is not stored; it lies in ``[num_samples / num_frames,
    num_samples / (num_frames - 1))`` since the coder pads to whole frames, which bounds the
    per-stream bitrate. A bitrate that only one stream count can give is accepted.

    Raises:
        CommandError: no stream count (or, for very short files, several) match ``kbps``.
    """
    if header.num_samples == 0 or header.num_frames == 0:
        raise CommandError("the file holds no audio, so it has no bitrate; use --streams")
    bits_per_frame = header.num_groups * header.bits_per_code
    rate = header.sample_rate / 1000
    frames, samples = header.num_frames, header.num_samples
    hi = bits_per_frame * rate * frames / samples  # kbps per stream, upper bound
    lo = bits_per_frame * rate * (frames - 1) / samples if frames > 1 else 0.0
    tolerance = 1e-6
    matches = [
        k
        for k in range(1, header.num_streams + 1)
        if lo * k - tolerance <= kbps <= hi * k + tolerance
    ]
    nominal = _round_rate(hi, lo)
    offered = ", ".join(f"{nominal * k:g}" for k in range(1, header.num_streams + 1))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        top = nominal * header.num_streams
        what = "exceeds the file's highest" if kbps > hi * header.num_streams else "is not an"
        raise CommandError(
            f"--kbps {kbps:g} {what} available bitrate: this file has {header.num_streams} "
            f"streams of {nominal:g} kbps (up to {top:g}); choose one of {offered} or use --streams"
        )
    raise CommandError(
        f"the file is too short to tell its bitrate per stream; use --streams 1..."
        f"{header.num_streams} instead of --kbps"
    )


def _round_rate(hi: float, lo: float) -> float:
    """A readable per-stream rate inside ``[lo, hi]`` (1.5 for ESC), else ``hi``."""
    for digits in range(0, 4):
        value = round(hi, digits)
        if lo - 1e-9 <= value <= hi + 1e-9:
            return value
    return hi if math.isfinite(hi) else 0.0


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="escx truncate",
        description="Keep the coarsest streams of an .escx file (lower bitrate, no re-encoding).",
    )
    parser.add_argument("input", metavar="IN", help=".escx file")
    parser.add_argument("-o", "--output", required=True, help="output .escx file")
    rate = parser.add_mutually_exclusive_group(required=True)
    rate.add_argument("--kbps", type=float, help="target bitrate, e.g. 3 (ESC: 1.5 per stream)")
    rate.add_argument("--streams", type=int, help="number of streams to keep")
    args = parser.parse_args(argv)

    from escx.bitstream import read_escx, read_header, truncate_bitstream, write_escx
    from escx.files.targets import check_not_input, check_output_path, check_output_suffix

    source, target = Path(args.input), Path(args.output)
    if source.is_dir():
        raise CommandError(f"{source} is a directory; expected an .escx file")
    if target.is_dir():
        target = target / source.name
    check_output_suffix(target, "escx truncate writes .escx bitstreams", (".escx",))
    # In place would be safe (the file is read whole, then replaced atomically), but the dropped
    # streams would be gone for good: a slip of -o should not cost the original.
    check_not_input(source, target)
    check_output_path(target)
    data = read_escx(source)
    header = read_header(data)
    streams = args.streams if args.kbps is None else streams_for_kbps(header, args.kbps)
    out = truncate_bitstream(data, streams)
    write_escx(target, out)
    summary(
        f"kept {streams} of {header.num_streams} streams: {len(data):,} -> {len(out):,} bytes "
        f"in {target}",
        target,
    )
    return 0
