"""The codec commands: escx compress / decompress / truncate / convert / eval, run in-process.

Every bad input must give one line on stderr, exit code 2 and no output file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from tools_fixtures import (
    REFERENCE_FIXTURES,
    make_checkpoint,
    speech_like,
    unpack_reference_state,
    write_wav,
)

from escx.api import load_codec
from escx.bitstream import HEADER_SIZE, read_header
from escx.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(make_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt"))


@pytest.fixture(scope="module")
def escx_file(tmp_path_factory, model) -> Path:
    """A 9 kbps .escx file of 0.5 s of audio."""
    folder = tmp_path_factory.mktemp("escx")
    source = write_wav(folder / "a.wav", speech_like(8000))
    assert main(["compress", str(source), "-o", str(folder / "a.escx"), "--model", model]) == 0
    return folder / "a.escx"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_fails(capsys, *args, match: str) -> str:
    code, _, err = run(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("escx: error:"), err
    assert match.lower() in lines[0].lower(), lines[0]
    return lines[0]


# ---- compress / decompress -------------------------------------------------------------------


def test_compress_and_decompress_one_file(tmp_path, capsys, model):
    source = write_wav(tmp_path / "speech.wav", speech_like(20_000))
    code, out, _ = run(capsys, "compress", source, "-o", tmp_path / "s.escx", "--model", model)
    assert code == 0 and "1 file" in out and "kbps" in out
    header = read_header((tmp_path / "s.escx").read_bytes())
    assert header.num_streams == 6 and header.num_samples == 20_000
    code, out, _ = run(
        capsys, "decompress", tmp_path / "s.escx", "-o", tmp_path / "s.wav", "--model", model
    )
    assert code == 0 and "decompressed 1 file" in out
    info = sf.info(tmp_path / "s.wav")
    assert (info.frames, info.samplerate, info.subtype) == (20_000, 16000, "PCM_16")


def test_folders_mirror_their_layout(tmp_path, capsys, model):
    src = tmp_path / "in"
    for name in ["a.wav", "sub/b.flac", "sub/deeper/c.wav"]:
        write_wav(src / name, speech_like(3000))
    (src / "notes.txt").write_text("not audio, skipped")
    code, out, err = run(
        capsys, "compress", src, "-o", tmp_path / "codes", "--kbps", "3", "--model", model
    )
    assert code == 0, err
    found = sorted(str(p.relative_to(tmp_path / "codes")) for p in (tmp_path / "codes").rglob("*"))
    assert found == ["a.escx", "sub", "sub/b.escx", "sub/deeper", "sub/deeper/c.escx"]
    assert "3 files" in out
    code, _, err = run(
        capsys, "decompress", tmp_path / "codes", "-o", tmp_path / "wavs", "--model", model
    )
    assert code == 0, err
    wavs = sorted(str(p.relative_to(tmp_path / "wavs")) for p in (tmp_path / "wavs").rglob("*.wav"))
    assert wavs == ["a.wav", "sub/b.wav", "sub/deeper/c.wav"]
    assert all(sf.info(tmp_path / "wavs" / w).frames == 3000 for w in wavs)


def test_several_inputs_go_into_a_folder(tmp_path, capsys, model):
    one = write_wav(tmp_path / "one.wav", speech_like(2000))
    write_wav(tmp_path / "set" / "two.wav", speech_like(2000))
    code, _, err = run(
        capsys, "compress", one, tmp_path / "set", "-o", tmp_path / "out", "--model", model
    )
    assert code == 0, err
    assert (tmp_path / "out" / "one.escx").is_file()
    assert (tmp_path / "out" / "set" / "two.escx").is_file()
    # A trailing slash asks for a folder even for one file.
    code, _, err = run(capsys, "compress", one, "-o", f"{tmp_path / 'new'}/", "--model", model)
    assert code == 0 and (tmp_path / "new" / "one.escx").is_file(), err


def test_short_resampled_and_multichannel_inputs_work(tmp_path, capsys, model):
    inputs = {
        "short.wav": (speech_like(100), 16000),  # shorter than one 320-sample frame
        "cd.wav": (speech_like(4410), 44100),
        "stereo.flac": (speech_like(3000, channels=2), 16000),
    }
    for name, (audio, sr) in inputs.items():
        write_wav(tmp_path / name, audio, sr)
        escx, wav = tmp_path / f"{name}.escx", tmp_path / f"{name}.out.wav"
        code, _, err = run(capsys, "compress", tmp_path / name, "-o", escx, "--model", model)
        assert code == 0, err
        if name == "cd.wav":
            assert "notice" in err and "resampled 44100 Hz -> 16000 Hz" in err
        if name == "stereo.flac":
            assert "notice" in err and "down-mixed 2 channels" in err
        assert run(capsys, "decompress", escx, "-o", wav, "--model", model)[0] == 0
        expected = {"short.wav": 100, "cd.wav": 1600, "stereo.flac": 3000}[name]
        assert sf.info(wav).frames == expected


def test_compress_refuses_two_inputs_with_one_output_name(tmp_path, capsys, model):
    write_wav(tmp_path / "in" / "a.wav", speech_like(2000))
    write_wav(tmp_path / "in" / "a.flac", speech_like(2000))
    assert_fails(
        capsys,
        "compress",
        tmp_path / "in",
        "-o",
        tmp_path / "out",
        "--model",
        model,
        match="would both be written",
    )
    assert not (tmp_path / "out").exists()


# ---- truncate --------------------------------------------------------------------------------


def test_truncate_equals_compressing_at_the_lower_bitrate(tmp_path, capsys, model, escx_file):
    code, out, _ = run(capsys, "truncate", escx_file, "--kbps", "3", "-o", tmp_path / "t.escx")
    assert code == 0 and "kept 2 of 6 streams" in out
    source = escx_file.with_name("a.wav")
    run(capsys, "compress", source, "-o", tmp_path / "c.escx", "--kbps", "3", "--model", model)
    assert (tmp_path / "t.escx").read_bytes() == (tmp_path / "c.escx").read_bytes()
    code, _, _ = run(capsys, "truncate", escx_file, "--streams", "1", "-o", tmp_path / "one.escx")
    assert code == 0 and read_header((tmp_path / "one.escx").read_bytes()).num_streams == 1


# ---- bad input -------------------------------------------------------------------------------


def test_missing_inputs_and_models(tmp_path, capsys, model, escx_file):
    out = tmp_path / "out.escx"
    assert_fails(
        capsys, "compress", tmp_path / "nope.wav", "-o", out, "--model", model, match="not found"
    )
    source = write_wav(tmp_path / "a.wav", speech_like(1000))
    assert_fails(
        capsys,
        "compress",
        source,
        "-o",
        out,
        "--model",
        tmp_path / "nope.ckpt",
        match="checkpoint not found",
    )
    (tmp_path / "bad.ckpt").write_bytes(b"\x00" * 100)
    assert_fails(
        capsys, "compress", source, "-o", out, "--model", tmp_path / "bad.ckpt", match="cannot read"
    )
    assert_fails(
        capsys, "truncate", tmp_path / "nope.escx", "--kbps", "3", "-o", out, match="does not exist"
    )
    assert_fails(
        capsys,
        "decompress",
        tmp_path / "nope.escx",
        "-o",
        tmp_path / "o.wav",
        "--model",
        model,
        match="not found",
    )
    assert not out.exists() and not (tmp_path / "o.wav").exists()


def test_directory_where_a_file_is_needed(tmp_path, capsys, model):
    (tmp_path / "dir").mkdir()
    assert_fails(
        capsys,
        "truncate",
        tmp_path / "dir",
        "--kbps",
        "3",
        "-o",
        tmp_path / "t.escx",
        match="is a directory",
    )
    assert_fails(
        capsys,
        "compress",
        tmp_path / "dir",
        "-o",
        tmp_path / "o",
        "--model",
        model,
        match="no audio files",
    )
    assert_fails(capsys, "convert", tmp_path / "dir", "-o", tmp_path / "m.ckpt", match="not found")
    assert not (tmp_path / "t.escx").exists() and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("text.wav", b"just some text, not a RIFF header at all", "not a readable audio file"),
        ("empty.wav", b"", "empty"),
        ("zero.wav", None, "empty"),
        ("nan.wav", "nan", "nan"),
        ("inf.wav", "inf", "infinite"),
    ],
)
def test_unusable_audio(tmp_path, capsys, model, name, content, match):
    path = tmp_path / name
    if content is None:
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif isinstance(content, str):
        audio = speech_like(4000)
        audio[1234] = float(content)
        sf.write(path, audio, 16000, subtype="FLOAT")
    else:
        path.write_bytes(content)
    out = tmp_path / "out.escx"
    assert_fails(capsys, "compress", path, "-o", out, "--model", model, match=match)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_bad_audio_in_a_folder_stops_before_writing(tmp_path, capsys, model):
    write_wav(tmp_path / "in" / "good.wav", speech_like(2000))
    (tmp_path / "in" / "zz_bad.wav").write_bytes(b"garbage")
    assert_fails(
        capsys,
        "compress",
        tmp_path / "in",
        "-o",
        tmp_path / "out",
        "--model",
        model,
        match="zz_bad.wav",
    )
    assert not (tmp_path / "out").exists()


def test_damaged_escx_files(tmp_path, capsys, model, escx_file):
    data = escx_file.read_bytes()
    cases = {
        "cut.escx": (data[:-10], "truncated"),
        "flipped.escx": (data[:100] + bytes([data[100] ^ 1]) + data[101:], "checksum"),
        "newer.escx": (data[:4] + b"\x09" + data[5:], "newer"),
        "header.escx": (data[: HEADER_SIZE - 4], "truncated"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        out = tmp_path / f"{name}.wav"
        assert_fails(
            capsys, "decompress", tmp_path / name, "-o", out, "--model", model, match=match
        )
        assert not out.exists()
        out = out.with_suffix(".escx")  # truncate writes bitstreams
        assert_fails(capsys, "truncate", tmp_path / name, "--streams", "1", "-o", out, match=match)
        assert not out.exists()


def test_escx_from_another_model_is_refused(tmp_path, capsys, escx_file):
    other = make_checkpoint(tmp_path / "other.ckpt", seed=1)
    out = tmp_path / "o.wav"
    assert_fails(
        capsys, "decompress", escx_file, "-o", out, "--model", other, match="different model"
    )
    assert not out.exists()


@pytest.mark.parametrize("kbps", ["4", "10.5", "0", "-3"])
def test_unavailable_bitrates(tmp_path, capsys, model, escx_file, kbps):
    out = tmp_path / "o.escx"
    source = escx_file.with_name("a.wav")
    assert_fails(
        capsys,
        "compress",
        source,
        "-o",
        out,
        "--model",
        model,
        "--kbps",
        kbps,
        match="not available",
    )
    assert_fails(
        capsys, "truncate", escx_file, "--kbps", kbps, "-o", out, match="available bitrate"
    )
    assert not out.exists()


def test_unwritable_outputs(tmp_path, capsys, model, escx_file):
    source = escx_file.with_name("a.wav")
    blocker = tmp_path / "existing_file"
    blocker.write_text("a file, not a folder")
    for target in (tmp_path / "missing" / "x", blocker / "x"):
        for args in (
            ["compress", source, "-o", target.with_suffix(".escx"), "--model", model],
            ["decompress", escx_file, "-o", target.with_suffix(".wav"), "--model", model],
            ["truncate", escx_file, "--kbps", "3", "-o", target.with_suffix(".escx")],
            ["eval", "--model", model, "--data", source, "-o", target],
            ["convert", model, "-o", target.with_suffix(".ckpt")],
        ):
            assert_fails(
                capsys,
                *args,
                match="does not exist" if "missing" in str(target) else "not a directory",
            )
    assert not (tmp_path / "missing").exists() and blocker.read_text() == "a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_folder(tmp_path, capsys, model, escx_file):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert_fails(
            capsys,
            "truncate",
            escx_file,
            "--kbps",
            "3",
            "-o",
            folder / "t.escx",
            match="not writable",
        )
    finally:
        folder.chmod(0o700)


# ---- convert ---------------------------------------------------------------------------------


@pytest.mark.skipif(not REFERENCE_FIXTURES.is_dir(), reason="no reference fixtures")
def test_converted_reference_model_works_like_a_native_one(tmp_path, capsys):
    fixture = torch.load(REFERENCE_FIXTURES / "csrvq_swin.pt", weights_only=True)
    torch.save({"model_state_dict": unpack_reference_state(fixture)}, tmp_path / "ref.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(fixture["config"]))
    ckpt = tmp_path / "model.ckpt"
    code, out, err = run(capsys, "convert", tmp_path / "ref.pth", "-o", ckpt)  # config beside it
    assert code == 0 and "13,097 parameters" in out, err
    handle = load_codec(ckpt)
    assert torch.equal(handle.encode(fixture["input"], n_streams=6), fixture["codes"].long())
    # Codebooks of 16 entries: 3 groups x 4 bits x 50 frames/s = 0.6 kbps per stream.
    write_wav(tmp_path / "in.wav", speech_like(5000))
    code, _, err = run(
        capsys,
        "compress",
        tmp_path / "in.wav",
        "-o",
        tmp_path / "in.escx",
        "--model",
        ckpt,
        "--kbps",
        "1.8",
    )
    assert code == 0, err
    assert (
        run(capsys, "truncate", tmp_path / "in.escx", "--kbps", "0.6", "-o", tmp_path / "t.escx")[0]
        == 0
    )
    code, _, err = run(
        capsys, "decompress", tmp_path / "t.escx", "-o", tmp_path / "o.wav", "--model", ckpt
    )
    assert code == 0 and sf.info(tmp_path / "o.wav").frames == 5000, err


def test_convert_bad_inputs(tmp_path, capsys):
    (tmp_path / "ref.pth").write_bytes(b"garbage")
    (tmp_path / "config.yaml").write_text("model: {}\n")
    assert_fails(
        capsys, "convert", tmp_path / "ref.pth", "-o", tmp_path / "m.ckpt", match="cannot read"
    )
    assert_fails(
        capsys,
        "convert",
        tmp_path / "ref.pth",
        "--ref-config",
        tmp_path / "no.yaml",
        "-o",
        tmp_path / "m.ckpt",
        match="config not found",
    )
    assert not (tmp_path / "m.ckpt").exists()


# ---- eval ------------------------------------------------------------------------------------


def test_eval_writes_a_report(tmp_path, capsys, model):
    for index in range(2):
        write_wav(tmp_path / "data" / f"clip{index}.wav", speech_like(8000, seed=index))
    code, out, err = run(
        capsys,
        "eval",
        "--model",
        model,
        "--data",
        tmp_path / "data",
        "--streams",
        "1,6",
        "-o",
        tmp_path / "report",
        "--no-model-metrics",  # covered by test_listening_report
    )
    assert code == 0, err
    assert "| 1.5 |" in out and "| 9 |" in out and "small.ckpt" in out
    assert "DNSMOS" not in out
    names = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert names == [
        "audio",
        "codebook_usage.png",
        "quality_vs_bitrate.png",
        "report.html",
        "results.csv",
        "results.json",
        "results.md",
        "spectrograms",
    ]
    rows = json.loads((tmp_path / "report" / "results.json").read_text())["rows"]
    assert [r["streams"] for r in rows] == [1, 6] and rows[0]["files"] == 2
    assert all(r["kbps_measured"] > r["kbps"] for r in rows)  # container overhead on top


def test_eval_bad_arguments(tmp_path, capsys, model):
    write_wav(tmp_path / "data" / "clip.wav", speech_like(4000))
    data = tmp_path / "data"
    assert_fails(capsys, "eval", "--model", model, "--data", data, "--streams", "0-7", match="1..6")
    assert_fails(
        capsys, "eval", "--model", model, "--data", data, "--streams", "a", match="stream counts"
    )
    assert_fails(capsys, "eval", "--model", model, "--data", tmp_path / "none", match="not found")
    (tmp_path / "empty").mkdir()
    assert_fails(
        capsys, "eval", "--model", model, "--data", tmp_path / "empty", match="no audio files"
    )


# ---- memory on long files (slow: `pytest -m slow`) -------------------------------------------


@pytest.mark.slow
def test_one_hour_compresses_and_decompresses_in_bounded_memory(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "long_file_rss.py"
    result = tmp_path / "rss.json"
    done = subprocess.run(
        [sys.executable, str(script), "--minutes", "60", "--json", str(result)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.is_file(), done.stderr[-2000:]
    report = json.loads(result.read_text())
    assert report["output_length_matches"]
    assert report["compress"]["peak_rss_mb"] < 1536 and report["decompress"]["peak_rss_mb"] < 1536
