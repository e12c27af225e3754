"""escx export: ONNX graphs whose codes are escx's, checked through the user's path.

Fast: the exportable STFT and inverse STFT against escx's, the graphs in PyTorch form against
escx for every registered quantizer and codebook kind, and bad input through the console script.
Slow (tracing and translating take minutes): ``escx export`` of a briefly trained tiny ESC,
ONNX Runtime against escx on real speech, a Python process without torch coding a real file,
the docs/deploy.md example run as written, and ``escx bench --onnx``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import build_small
from tools_fixtures import SPEECH, make_checkpoint

from escx.api import save_codec_checkpoint
from escx.cli import main
from escx.codecs.stft_codec import STFTCodec
from escx.config import build_codec, codec_config_dict
from escx.export.graphs import exportable_copy, graphs_of, unsupported_part
from escx.export.spectral import AnalysisSTFT, SynthesisISTFT
from escx.perf import straightforward
from escx.spectral import ComplexSTFT

ESCX = str(Path(sys.executable).parent / "escx")
ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "docs" / "deploy.md"
ENV = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

needs_exporter = pytest.mark.skipif(
    find_spec("onnx") is None or find_spec("onnxscript") is None,
    reason="onnx / onnxscript not installed (pip install 'escx[export]')",
)
needs_runtime = pytest.mark.skipif(
    find_spec("onnxruntime") is None,
    reason="onnxruntime not installed (pip install 'escx[export]')",
)
needs_speech = pytest.mark.skipif(
    not SPEECH.is_dir(), reason=f"real speech not found at {SPEECH} (escx development checkout)"
)

# Lengths that pad differently: under one frame, one frame, one attention window plus a sample,
# an odd number of frames, an even one.
LENGTHS = (1, 319, 320, 641, 320 * 7 + 5, 320 * 8)


# ---- the exportable STFT --------------------------------------------------------------------


def test_stft_and_inverse_equal_escx_to_float_rounding():
    stft = ComplexSTFT()
    analysis, synthesis = AnalysisSTFT(stft), SynthesisISTFT(stft)
    gen = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 320 * 13, generator=gen) * 0.1
    spec = stft(audio)
    assert torch.allclose(analysis(audio), spec, atol=1e-5 * spec.abs().max())
    for length in (320 * 13, 320 * 13 - 7, 100):
        expected = stft.inverse(spec[..., :-1], length)
        got = synthesis(spec[..., :-1], length)
        assert got.shape == expected.shape == (2, length)
        assert (got - expected).abs().max() < 1e-6 * expected.abs().max()
    # On a grid padded past the input, the real frames come out as escx computes them.
    padded = torch.nn.functional.pad(audio, (0, 640 * 7 - audio.shape[-1]))
    grid = analysis.padded_grid(padded, audio.shape[-1], 8 * 7)
    assert torch.allclose(grid[..., :52], spec[..., :52], atol=1e-5 * spec.abs().max())
    noisy = torch.randn(2, 2, stft.freq_bins, 8 * 7, generator=gen)
    noisy[..., :52] = spec[..., :52]
    valid = (torch.arange(8 * 7) < 52).float()
    masked = synthesis(noisy, 320 * 13, valid)
    assert (masked - stft.inverse(spec[..., :52], 320 * 13)).abs().max() < 1e-6


# ---- the graphs in PyTorch form -------------------------------------------------------------


def _small(quantizer: str, **options) -> STFTCodec:
    return STFTCodec(
        build_small("encoder", "SwinEncoder"),
        build_small("decoder", "SwinDecoder"),
        build_small("quantizer", quantizer, **options),
    ).eval()


def _assert_graphs_equal_escx(codec) -> None:
    encoder, decoder = graphs_of(exportable_copy(codec))
    gen = torch.Generator().manual_seed(1)
    for length in LENGTHS:
        stft = getattr(codec, "stft", None)
        if stft is not None and stft.padded_length(length) <= stft.n_fft // 2:
            continue  # shorter than the STFT's reflection: escx cannot code it either
        audio = torch.randn(2, length, generator=gen) * 0.1
        with torch.inference_mode():
            codes = codec.encode(audio, codec.max_streams)  # escx's default (fast) path
            with straightforward():
                ours = encoder.encode(audio)
            assert torch.equal(ours, codes), length
            for k in sorted({1, codec.max_streams // 2, codec.max_streams} - {0}):
                expected = codec.decode(codes[:, :k], length)
                with straightforward():
                    got = decoder.decode(codes[:, :k], length)
                assert got.shape == expected.shape
                assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max()), k


def test_graphs_equal_escx_for_every_quantizer(quantizer_name):
    codec = _small(quantizer_name)
    reason = unsupported_part(codec)
    if reason is not None:  # refused up front with a reason naming the part
        assert quantizer_name in reason
        return
    _assert_graphs_equal_escx(codec)


def test_graphs_equal_escx_for_dac():
    configs = [ROOT / "experiments" / "dac.yaml", ROOT / "experiments" / "dac-tiny.yaml"]
    _assert_graphs_equal_escx(build_codec(*configs).eval())


@pytest.mark.parametrize("kind", ["VQ", "SimVQ", "FSQ", "LFQ"])
def test_graphs_equal_escx_for_every_codebook_kind(kind):
    _assert_graphs_equal_escx(_small("CrossScaleRVQ", codebook=kind))


# ---- bad input through the console script ---------------------------------------------------


@pytest.fixture(scope="module")
def bad_input(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export-bad-input")
    make_checkpoint(folder / "model.ckpt")
    conv = {
        "class_path": "STFTCodec",
        "init_args": {
            "encoder": {"class_path": "ConvEncoder", "init_args": {"dims": [8, 8, 8, 8, 8, 16]}},
            "decoder": {"class_path": "ConvDecoder", "init_args": {"dims": [16, 8, 8, 8, 8, 8]}},
            "quantizer": {"class_path": "CrossScaleRVQ", "init_args": {"codebook_dims": [4] * 6}},
        },
    }
    save_codec_checkpoint(build_codec({"codec": conv}), conv, folder / "conv.ckpt")
    (folder / "a-file").write_text("not a folder\n")
    (folder / "mine").mkdir()
    (folder / "mine" / "notes.txt").write_text("a user's file\n")
    return folder


# case -> (arguments, words the one line must hold); every case exits before any tracing.
BAD = {
    "unsupported codec": (["export", "--model", "conv.ckpt", "-o", "out"],
                          "its encoder ConvEncoder (exportable: SwinEncoder) has no ONNX export"),
    "missing checkpoint": (["export", "--model", "nothing.ckpt", "-o", "out"],
                           "no such checkpoint"),
    "output is a file": (["export", "--model", "model.ckpt", "-o", "a-file"], "is a file"),
    "foreign folder": (["export", "--model", "model.ckpt", "-o", "mine"],
                       "not part of an escx export"),
    "missing parent": (["export", "--model", "model.ckpt", "-o", "no/such/out"],
                       "does not exist"),
    "check files": (["export", "--model", "model.ckpt", "-o", "out", "--check-files", "0"],
                    "--check-files must be in 1..1000"),
    "check data": (["export", "--model", "model.ckpt", "-o", "out", "--check-data", "nowhere"],
                   "--check-data nowhere: no such folder"),
    "bench: no folder": (["bench", "--onnx", "nowhere", "--model", "model.ckpt", "-o", "out"],
                         "--onnx nowhere: no such folder"),
    "bench: not an export": (["bench", "--onnx", "mine", "--model", "model.ckpt", "-o", "out"],
                             "mine is not an escx export: no escx-onnx.json"),
}  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _assert_refused(folder: Path, before: dict, code: int, stderr: str, words: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("escx: error:"), stderr
    assert words in lines[0] and "Traceback" not in stderr
    assert not (folder / "out").exists()
    assert _snapshot(folder) == before  # nothing written, nothing left behind
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_changes_nothing(bad_input, case, capsys, monkeypatch):
    args, words = BAD[case]
    monkeypatch.chdir(bad_input)
    before = _snapshot(bad_input)
    code = main(args)
    _assert_refused(bad_input, before, code, capsys.readouterr().err, words)


@pytest.mark.parametrize("launcher", ["console script", "python -m escx.cli"])
def test_bad_input_through_the_commands(bad_input, launcher):
    # The two ways users start escx, each on the refusal that has to load the checkpoint.
    args, words = BAD["unsupported codec"]
    command = [ESCX] if launcher == "console script" else [sys.executable, "-m", "escx.cli"]
    before = _snapshot(bad_input)
    run = subprocess.run([*command, *args], cwd=bad_input, capture_output=True, text=True,
                         env=ENV, timeout=300)  # fmt: skip
    _assert_refused(bad_input, before, run.returncode, run.stderr, words)


# ---- a trained tiny codec, exported (slow) --------------------------------------------------

RUN = [sys.executable, "-c"]


@pytest.fixture(scope="module")
def trained_export(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny ESC trained briefly on real speech, exported with int8: (checkpoint, folder)."""
    if not SPEECH.is_dir():
        pytest.skip(f"real speech not found at {SPEECH} (escx development checkout)")
    if (
        find_spec("onnx") is None
        or find_spec("onnxscript") is None
        or find_spec("onnxruntime") is None
    ):
        pytest.skip("onnx, onnxscript or onnxruntime not installed (pip install 'escx[export]')")
    work = tmp_path_factory.mktemp("trained-export")
    experiments = ROOT / "experiments"
    fit = [ESCX, "fit", "--config", str(experiments / "esc.yaml"),
           "--config", str(experiments / "tiny.yaml"),
           "--config", str(experiments / "recipes" / "quick.yaml"),
           "--data.train", str(SPEECH / "train"), "--data.val", str(SPEECH / "val"),
           "--trainer.max_steps", "40", "--model.pretrain_steps", "20",
           "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
           "--trainer.default_root_dir", str(work / "run")]  # fmt: skip
    run = subprocess.run(fit, cwd=work, capture_output=True, text=True, env=ENV, timeout=1800)
    assert run.returncode == 0, run.stderr[-2000:]
    checkpoint = next((work / "run").rglob("last.ckpt"))
    export = [ESCX, "export", "--model", str(checkpoint), "-o", str(work / "export"), "--int8",
              "--check-data", str(SPEECH / "val"), "--check-files", "2"]  # fmt: skip
    run = subprocess.run(export, cwd=work, capture_output=True, text=True, env=ENV, timeout=3600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "codes 100.000 % equal to escx's" in run.stdout, run.stdout
    assert "| 9 |" in run.stdout  # the int8 cost table
    return checkpoint, work / "export"


@pytest.mark.slow
def test_export_writes_the_described_graphs(trained_export):
    checkpoint, folder = trained_export
    from escx.api import load_codec
    from escx.export.description import read_description

    handle = load_codec(checkpoint)
    spec = read_description(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "decoder-int8.onnx", "decoder.onnx", "encoder-int8.onnx", "encoder.onnx",
        "escx-onnx.json",
    ]  # fmt: skip
    assert spec["checkpoint"]["fingerprint"] == handle.fingerprint.hex()
    assert (spec["sample_rate"], spec["samples_per_frame"], spec["streams"]) == (16000, 320, 6)
    assert [b["kbps"] for b in spec["bitrates"]] == [1.5, 3.0, 4.5, 6.0, 7.5, 9.0]
    assert spec["encoder"]["inputs"]["audio"]["shape"] == ["batch", "samples"]
    assert spec["decoder"]["inputs"]["length"]["shape"] == []
    assert spec["int8"]["kept_fp32"] and all(
        layer.startswith("codec.quantizer.") for layer in spec["int8"]["kept_fp32"]
    )
    for graphs in (spec, spec["int8"]):
        for role in ("encoder", "decoder"):
            assert (folder / graphs[role]["file"]).stat().st_size == graphs[role]["bytes"]


@pytest.mark.slow
def test_onnx_runtime_equals_escx_on_real_speech(trained_export):
    checkpoint, folder = trained_export
    from escx.api import load_codec
    from escx.audio import read_audio
    from escx.export.check import compare
    from escx.export.runtime import OnnxCodec

    handle = load_codec(checkpoint)
    onnx = OnnxCodec(folder)
    files = sorted((SPEECH / "val").rglob("*.flac"))[:6]
    clips = [read_audio(f, 16000)[0].numpy() for f in files]
    clips += [clips[0][:n] for n in LENGTHS]
    result = compare(handle.codec, onnx, clips)
    assert result.mismatched == 0, result.summary()
    assert min(result.decode_snr_db.values()) >= 60, result.decode_snr_db
    assert min(result.back_snr_db.values()) >= 60, result.back_snr_db
    assert result.batch_invariant is True
    int8 = OnnxCodec(folder, int8=True)
    codes = int8.encode(clips[0])
    assert codes.shape == onnx.encode(clips[0]).shape and 0 <= codes.min() and codes.max() < 1024
    assert int8.decode(codes[:, :2], len(clips[0])).shape == (1, len(clips[0]))


# A process that never imports torch codes a real file through onnxruntime alone.
TORCH_FREE = """
import json, sys
import numpy as np, onnxruntime as ort, soundfile as sf
folder, source, target = sys.argv[1:4]
audio, rate = sf.read(source, dtype="float32")
spec = json.load(open(folder + "/escx-onnx.json"))
assert rate == spec["sample_rate"]
session = ort.InferenceSession(folder + "/" + spec["encoder"]["file"])
codes = session.run(["codes"], {"audio": audio[None]})[0]
np.save(target, codes)
assert "torch" not in sys.modules and "escx" not in sys.modules, "torch was imported"
print("torch-free", codes.shape)
"""


@pytest.mark.slow
def test_a_process_without_torch_gets_escx_codes(trained_export, tmp_path):
    checkpoint, folder = trained_export
    from escx.api import load_codec
    from escx.audio import read_audio

    source = sorted((SPEECH / "val").rglob("*.flac"))[3]
    run = subprocess.run([*RUN, TORCH_FREE, str(folder), str(source), str(tmp_path / "c.npy")],
                         capture_output=True, text=True, env=ENV, timeout=300)  # fmt: skip
    assert run.returncode == 0 and "torch-free" in run.stdout, run.stderr
    codes = np.load(tmp_path / "c.npy")
    expected = load_codec(checkpoint).encode(read_audio(source, 16000)[0])
    assert np.array_equal(codes, expected.numpy())


def deploy_example() -> str:
    """The first Python block of docs/deploy.md, as written."""
    blocks = re.findall(r"```python\n(.*?)```", DEPLOY.read_text(), flags=re.S)
    assert blocks, "docs/deploy.md has no Python example"
    return blocks[0]


@pytest.mark.slow
def test_deploy_example_runs_as_written(trained_export, tmp_path):
    checkpoint, folder = trained_export
    from escx.api import load_codec

    (tmp_path / "export").symlink_to(folder)
    source = sorted((SPEECH / "val").rglob("*.flac"))[5]
    audio, rate = sf.read(source, dtype="int16")
    sf.write(tmp_path / "speech.wav", audio, rate, subtype="PCM_16")
    (tmp_path / "example.py").write_text(deploy_example())
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                         text=True, env=ENV, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "decoded 2 streams (3 kbps)" in run.stdout
    info = sf.info(tmp_path / "decoded.wav")
    assert (info.frames, info.samplerate) == (len(audio), 16000)
    expected = load_codec(checkpoint).encode(torch.from_numpy(audio.astype(np.float32) / 32768))
    assert np.array_equal(np.load(tmp_path / "codes.npy"), expected.numpy())


@pytest.mark.slow
def test_bench_onnx_reports_both_engines_and_sizes(trained_export, tmp_path):
    checkpoint, folder = trained_export
    run = subprocess.run([ESCX, "bench", "--onnx", str(folder), "--model", str(checkpoint),
                          "--seconds", "2", "--repeats", "1", "--warmup", "0", "-o", "out"],
                         cwd=tmp_path, capture_output=True, text=True, env=ENV,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "out" / "onnx.json").read_text())
    engines = {(r["engine"], r["threads"], r["op"], r["kbps"]) for r in result["rows"]}
    for engine in ("escx eager", "onnxruntime fp32", "onnxruntime int8"):
        for threads in (1, 2):
            for op in ("encode", "decode"):
                assert {(engine, threads, op, 1.5), (engine, threads, op, 9.0)} <= engines
    assert result["sizes"]["encoder.onnx"] > 0 and result["sizes"]["checkpoint"] > 0
    assert "escx eager / this" in (tmp_path / "out" / "onnx.md").read_text()


@pytest.mark.slow
@needs_exporter
@needs_runtime
def test_dac_exports_through_escx(tmp_path):
    # The DAC baseline (random weights: equality does not need training) through the same command.
    configs = [ROOT / "experiments" / "dac.yaml", ROOT / "experiments" / "dac-tiny.yaml"]
    torch.manual_seed(0)
    save_codec_checkpoint(build_codec(*configs), codec_config_dict(*configs), tmp_path / "dac.ckpt")
    run = subprocess.run([ESCX, "export", "--model", "dac.ckpt", "-o", "export"], cwd=tmp_path,
                         capture_output=True, text=True, env=ENV, timeout=3600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "codes 100.000 % equal to escx's (0 of" in run.stdout, run.stdout
    assert "batch-invariant" in run.stdout and "NOT" not in run.stdout
    snr = float(re.search(r">= ([\d.]+) dB SNR", run.stdout).group(1))
    assert snr >= 60, run.stdout
    spec = json.loads((tmp_path / "export" / "escx-onnx.json").read_text())
    assert (spec["codec"], spec["streams"], spec["groups"]) == ("DAC", 12, 1)
    assert [b["kbps"] for b in spec["bitrates"]][:2] == [0.5, 1.0]
