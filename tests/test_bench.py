"""``escx bench`` and the inference precision option, end to end on a small codec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from tools_fixtures import SMALL_CODEC_CONFIG, make_checkpoint, speech_like, write_wav

import escx
from escx.api import load_codec
from escx.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return str(make_checkpoint(tmp_path_factory.mktemp("bench") / "small.ckpt"))


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("config") / "small.yaml"
    path.write_text(yaml.safe_dump({"model": {"codec": SMALL_CODEC_CONFIG}}))
    return str(path)


def test_bench_writes_json_and_markdown_with_same_run_ratios(tmp_path, capsys, small_config):
    out = tmp_path / "bench"
    args = ["bench", "--config", small_config, "--seconds", "0.5", "--repeats", "2", "--warmup",
            "1", "--threads", "1", "--no-compile", "--train-batch", "2", "--train-seconds", "0.5",
            "--train-repeats", "1", "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    result = json.loads((out / "bench.json").read_text())
    (cpu,) = result["results"]
    assert cpu["matmul_peak_gflops"]["fp32"] > 0 and cpu["matmul_peak_gflops"]["bf16"] > 0
    variants = {row["variant"] for row in cpu["inference"]}
    assert {"straightforward fp32", "escx fp32", "escx bf16"} <= variants
    assert {(r["op"], r["kbps"]) for r in cpu["inference"]} == {
        ("encode", 9.0), ("decode", 9.0), ("encode", 1.5), ("decode", 1.5)
    }  # fmt: skip
    for row in cpu["inference"]:
        assert row["median_s"] > 0 and row["gflop"] > 0
        assert row["gflops"] == pytest.approx(row["gflop"] / row["median_s"])
    # The fast path must code exactly like the straightforward one.
    assert cpu["code_agreement"]["escx fp32"] == 1.0
    steps = {s["variant"]: s for s in cpu["training"]}
    # escx's training kernels compute the same step (to float rounding), each in its own process.
    assert steps["escx fp32"]["first_loss"] == pytest.approx(
        steps["straightforward fp32"]["first_loss"], rel=1e-5
    )
    text = (out / "bench.md").read_text()
    assert "speed-up vs straightforward" in text and "### Targets" in text
    assert "matmul peak" in text.lower()
    # DAC at 16 kHz beside it, in the same run: the released model (6 kbps) and 18 codebooks.
    refs = {(r["model"], r["op"]): r for r in cpu["references"]}
    assert {(m, r["parameters"], r["kbps"]) for (m, _), r in refs.items()} == {
        ("DAC 16 kHz, 12 codebooks", 74_175_906, 6.0), ("DAC 16 kHz, 18 codebooks", 74_335_746, 9.0)
    }  # fmt: skip
    assert all(r["median_s"] > 0 and r["gflop"] > 0 for r in refs.values())
    # FLOPs scale with the audio: 0.5 s of the 18-codebook DAC is 1/20 of its 10 s figures.
    assert refs[("DAC 16 kHz, 18 codebooks", "decode")]["gflop"] == pytest.approx(556.4 / 20, 0.01)
    assert cpu["parameters"] == sum(p.numel() for p in escx.build_codec(small_config).parameters())
    assert "DAC beside it" in text and "x time of escx fp32" in text


def test_bench_refuses_bad_options_in_one_line(tmp_path, capsys):
    assert main(["bench", "--repeats", "0", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["escx: error: --repeats must be positive"]


def test_streaming_bench_with_profile_through_the_console_script(tmp_path, small_config):
    """`escx bench --streaming --profile` from a clean folder: per-frame times, codes equal to
    whole-signal coding, and where the time goes (operations, matrix products)."""
    escx_bin = Path(sys.executable).parent / "escx"
    out = tmp_path / "report"
    done = subprocess.run(
        [str(escx_bin), "bench", "--streaming", "--profile", "--config", small_config,
         "--seconds", "0.5", "-o", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads((out / "streaming.json").read_text())["models"].values()
    assert row["codes_equal"] == 1.0
    assert row["cpu"]["total"]["p50_ms"] > 0
    profile = row["profile"]
    assert profile["frames"] == 100 and profile["ops_per_frame"] > 100
    assert 0 < profile["product_ms_per_frame"] < profile["op_ms_per_frame"]
    assert "operations per frame" in (out / "streaming.md").read_text()


def test_profile_without_streaming_is_one_line(tmp_path, capsys):
    assert main(["bench", "--profile", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "escx: error: --profile goes with --streaming (escx bench --streaming --profile)"
    ]


def test_bench_checks_bf16_quality_on_a_separate_trained_model(tmp_path, small_config, model):
    speech = tmp_path / "speech"
    speech.mkdir()
    for i in range(2):
        write_wav(speech / f"{i}.wav", speech_like(16000, seed=i))
    out = tmp_path / "bench"
    args = ["bench", "--config", small_config, "--seconds", "0.5", "--repeats", "1", "--warmup",
            "0", "--threads", "1", "--no-compile", "--no-train", "--no-dac", "--device", "cpu",
            "--quality-model", model, "--quality-data", str(speech), "--quality-files", "2",
            "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    (cpu,) = json.loads((out / "bench.json").read_text())["results"]
    quality = cpu["quality"]
    assert quality["files"] == 2 and quality["model"] == model
    rates = {r["kbps"] for r in quality["rows"]}
    assert len(rates) == 2  # one stream and all streams
    assert {(r["precision"], r["kbps"]) for r in quality["rows"]} == {
        (p, k) for p in ("fp32", "bf16") for k in rates
    }
    assert "bf16 against fp32 quality" in (out / "bench.md").read_text()


def test_bench_refuses_a_missing_quality_model_in_one_line(tmp_path, capsys):
    missing = tmp_path / "none.ckpt"
    assert main(["bench", "--quality-model", str(missing), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"escx: error: --quality-model {missing}: no such checkpoint"]
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compress_decompress_with_a_precision(tmp_path, capsys, model, precision):
    source = write_wav(tmp_path / "a.wav", speech_like(8000))
    code = main(["compress", str(source), "-o", str(tmp_path / "a.escx"), "--model", model,
                 "--precision", precision])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    code = main(["decompress", str(tmp_path / "a.escx"), "-o", str(tmp_path / "a.wav"),
                 "--model", model, "--precision", precision])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sf.info(tmp_path / "a.wav").frames == 8000


def test_unknown_precision_is_refused(tmp_path, capsys, model):
    source = write_wav(tmp_path / "a.wav", speech_like(800))
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(source), "-o", str(tmp_path / "a.escx"), "--model", model,
              "--precision", "fp16"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "'fp16'" in err[0]
    assert not (tmp_path / "a.escx").exists()


def test_load_codec_precision(model):
    assert load_codec(model, precision="bf16").codec.inference_precision == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        load_codec(model, precision="int8")


def test_readme_documents_bench_and_precision():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "escx bench" in readme and "--precision bf16" in readme


def test_recipe_probe_prints_one_json_line_per_evaluation(tmp_path, small_config):
    for split, count in (("train", 2), ("val", 3)):
        for i in range(count):
            write_wav(tmp_path / split / f"{i}.wav", speech_like(19_200, seed=i))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_probe.py"
    args = [sys.executable, str(script), "--data", str(tmp_path), "--steps", "2",
            "--eval-every", "1", "--eval-files", "1",
            "--batch", "2", "--segment", "4000", "--config", small_config,
            "--loss", '{"compressed_spectrum": 1, "waveform": 10, "sisdr": 0.1}']  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert set(rows[0]["loss"]) == {"compressed_spectrum", "waveform", "sisdr"}
    assert all(row["pesq"] >= 1.0 and row["sisdr"] < 100 for row in rows)
