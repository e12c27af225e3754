"""escx compress --stream / escx decompress --stream: raw PCM through pipes, bad input.

Every bad input gives one line on stderr and exit code 2, and an output file is never left
behind; a stream cut short decodes up to its last whole packet with one warning line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tools_fixtures import SPEECH, make_checkpoint, speech_like

from escx.cli import main
from escx.streaming.packets import STREAM_HEADER_SIZE, PacketReader

ESCX = str(Path(sys.executable).parent / "escx")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(make_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt"))


@pytest.fixture(scope="module")
def pcm(tmp_path_factory) -> Path:
    """1.3 s of s16le PCM (not a whole number of frames)."""
    path = tmp_path_factory.mktemp("pcm") / "in.pcm"
    audio = np.round(speech_like(20_807) * 32767).astype("<i2")
    path.write_bytes(audio.tobytes())
    return path


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory, model, pcm) -> Path:
    path = tmp_path_factory.mktemp("stream") / "in.escxs"
    assert main(["compress", "--stream", str(pcm), "-o", str(path), "--model", model]) == 0
    return path


@pytest.fixture(scope="module")
def escx_file(tmp_path_factory, model) -> Path:
    """A file-form .escx (not a stream)."""
    folder = tmp_path_factory.mktemp("file")
    sf.write(folder / "a.wav", speech_like(4000), 16000, subtype="PCM_16")
    assert (
        main(["compress", str(folder / "a.wav"), "-o", str(folder / "a.escx"), "--model", model])
        == 0
    )
    return folder / "a.escx"


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, match: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("escx"), err
    assert "error" in lines[0] and match.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err


def test_the_stream_decodes_like_the_file_path(tmp_path, capsys, model, pcm, stream_file):
    reader = PacketReader()
    packets = reader.feed(stream_file.read_bytes())
    assert reader.ended and len(packets) == -(-20_807 // 320)  # one packet per frame
    assert packets[-1].num_samples == 20_807
    code, out, _ = run(capsys, "decompress", "--stream", stream_file, "-o", tmp_path / "s.wav",
                       "--model", model)  # fmt: skip
    assert code == 0 and "decompressed" in out
    wav = tmp_path / "in.wav"
    samples = np.frombuffer(pcm.read_bytes(), "<i2")
    sf.write(wav, samples, 16000, subtype="PCM_16")
    assert run(capsys, "compress", wav, "-o", tmp_path / "f.escx", "--model", model)[0] == 0
    assert run(capsys, "decompress", tmp_path / "f.escx", "-o", tmp_path / "f.wav",
               "--model", model)[0] == 0  # fmt: skip
    streamed, _ = sf.read(tmp_path / "s.wav", dtype="int16")
    filed, _ = sf.read(tmp_path / "f.wav", dtype="int16")
    assert streamed.shape == filed.shape == (20_807,)
    # Same codes; float rounding of differently sized slices moves a few samples by one step.
    assert np.abs(streamed.astype(int) - filed).max() <= 1


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_input", "extra", "match"),
    [
        (lambda d, pcm: _write(d / "odd.pcm", pcm.read_bytes() + b"\1"), [], "inside a sample"),
        (lambda d, pcm: _write(d / "empty.pcm", b""), [], "holds no audio"),
        (
            lambda d, pcm: _write(d / "nan.pcm", np.array([0.1, np.nan], "<f4").tobytes()),
            ["--pcm", "f32le"],
            "NaN",
        ),
        (lambda d, pcm: pcm, ["--packet-frames", "0"], "--packet-frames"),
        (lambda d, pcm: pcm, ["--kbps", "2"], "not available"),
        (lambda d, pcm: d / "missing.pcm", [], "input not found"),
    ],
)
def test_compress_stream_bad_input(tmp_path, capsys, model, pcm, make_input, extra, match):
    source = make_input(tmp_path, pcm)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(capsys, "compress", "--stream", source, "-o", tmp_path / "out.escxs",
                       "--model", model, *extra)  # fmt: skip
    assert code == 2
    one_error_line(err, match)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary file


def _damaged(stream: bytes) -> bytes:
    data = bytearray(stream)
    data[STREAM_HEADER_SIZE + 40] ^= 1
    return bytes(data)


@pytest.mark.parametrize(
    ("make_input", "output", "match"),
    [
        (lambda d, s, f: f, "out.wav", "an .escx file, not a stream"),
        (lambda d, s, f: _write(d / "junk", b"RIFF0000WAVE"), "out.wav", "not an escx stream"),
        (lambda d, s, f: _write(d / "bad", _damaged(s.read_bytes())), "out.wav", "checksum"),
        (
            lambda d, s, f: _write(d / "head", s.read_bytes()[:STREAM_HEADER_SIZE]),
            "out.wav",
            "before its first packet",
        ),  # fmt: skip
        (lambda d, s, f: _write(d / "half", s.read_bytes()[:20]), "out.wav", "inside its header"),
        (lambda d, s, f: s, "out.pcm", "give a .wav or .flac"),
        (lambda d, s, f: d / "missing", "out.wav", "input not found"),
    ],
)
def test_decompress_stream_bad_input(tmp_path, capsys, model, stream_file, escx_file,
                                     make_input, output, match):  # fmt: skip
    source = make_input(tmp_path, stream_file, escx_file)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(capsys, "decompress", "--stream", source, "-o", tmp_path / output,
                       "--model", model)  # fmt: skip
    assert code == 2
    one_error_line(err, match)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_stream_from_another_model_is_refused(tmp_path, capsys, stream_file):
    other = str(make_checkpoint(tmp_path / "other.ckpt", seed=1))
    code, _, err = run(capsys, "decompress", "--stream", stream_file, "-o", tmp_path / "o.wav",
                       "--model", other)  # fmt: skip
    assert code == 2
    one_error_line(err, "different model")
    assert not (tmp_path / "o.wav").exists()


def test_a_cut_stream_decodes_its_whole_packets(tmp_path, capsys, model, stream_file):
    data = stream_file.read_bytes()
    cut = _write(tmp_path / "cut.escxs", data[: len(data) // 2 + 3])
    whole = PacketReader().feed(cut.read_bytes())
    code, _, err = run(capsys, "decompress", "--stream", cut, "-o", tmp_path / "cut.wav",
                       "--model", model)  # fmt: skip
    assert code == 0
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "warning" in warnings[0] and "was cut" in warnings[0]
    assert sf.info(tmp_path / "cut.wav").frames == 320 * len(whole)


@pytest.mark.slow
def test_a_bad_stream_through_python_m_escx_cli(tmp_path, model):
    junk = _write(tmp_path / "junk", b"\0" * 100)
    result = subprocess.run(
        [sys.executable, "-m", "escx.cli", "decompress", "--stream", "--model", model],
        input=junk.read_bytes(), capture_output=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == b""
    one_error_line(result.stderr.decode(), "not an escx stream")


@pytest.mark.slow
@pytest.mark.skipif(not (SPEECH / "val").is_dir(), reason=f"real speech not found at {SPEECH}")
def test_a_pipe_of_real_time_pcm_decodes_like_the_file_path(tmp_path, model):
    """PCM written into escx compress --stream 20 ms at a time, its stdout piped into escx
    decompress --stream: the samples equal the file path's (same codes; one step of rounding)."""
    path = sorted((SPEECH / "val").glob("*.flac"))[0]
    samples, _ = sf.read(path, dtype="int16")
    samples = samples[:24_123]
    sf.write(tmp_path / "in.wav", samples, 16000, subtype="PCM_16")
    for args in (["compress", "in.wav", "-o", "f.escx"], ["decompress", "f.escx", "-o", "f.wav"]):
        subprocess.run([ESCX, *args, "--model", model], cwd=tmp_path, check=True, timeout=300)
    encoder = subprocess.Popen(
        [ESCX, "compress", "--stream", "--model", model], cwd=tmp_path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    decoder = subprocess.Popen(
        [ESCX, "decompress", "--stream", "--model", model], cwd=tmp_path,
        stdin=encoder.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    encoder.stdout.close()  # the decoder holds the pipe now
    data = samples.astype("<i2").tobytes()
    for start in range(0, len(data), 640):  # 20 ms of s16le at a time
        encoder.stdin.write(data[start : start + 640])
        encoder.stdin.flush()
        time.sleep(0.001)
    encoder.stdin.close()
    decoded, decoder_err = decoder.communicate(timeout=300)
    assert encoder.wait(timeout=300) == 0, encoder.stderr.read().decode()
    assert decoder.returncode == 0, decoder_err.decode()
    assert "compressed 1.51 s" in encoder.stderr.read().decode()
    streamed = np.frombuffer(decoded, "<i2")
    filed, _ = sf.read(tmp_path / "f.wav", dtype="int16")
    assert streamed.shape == filed.shape == (24_123,)
    assert np.abs(streamed.astype(int) - filed).max() <= 1
