"""DAC, the waveform codec family (docs/esc.md §18): the released architecture's parameter counts,
lengths, DAC's per-sample quantizer dropout, the losses it trains with, codebook metrics with one
group, chunked coding, the ``.escx`` family field; and the user's path through the ``escx``
console script: a tiny DAC trains, then compresses and decompresses a real file."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tools_fixtures import SPEECH, make_checkpoint, speech_like, write_wav

import escx
from escx.api import save_codec_checkpoint
from escx.bitstream import read_header
from escx.chunking import encode_chunked
from escx.cli import main
from escx.codecs.waveform import DAC
from escx.mel import mel_filterbank
from escx.metrics import CodebookUsage
from escx.quantizers.factorized import FactorizedRVQ
from escx.training.module import CodecModule

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
ESCX = str(Path(sys.executable).parent / "escx")
SMALL = {"encoder_dim": 2, "latent_dim": 16, "decoder_dim": 32}
SMALL_CONFIG = {
    "class_path": "DAC",
    "init_args": {**SMALL, "quantizer": {"class_path": "FactorizedRVQ", "init_args": {
        "n_streams": 4, "codebook_size": 16, "codebook_dim": 4}}},
}  # fmt: skip


def small_dac(**quantizer) -> DAC:
    options = {"n_streams": 4, "codebook_size": 16, "codebook_dim": 4, **quantizer}
    return DAC(**SMALL, quantizer=FactorizedRVQ(**options))


def _run(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([ESCX, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip


def test_parameter_counts_of_the_released_16_khz_models() -> None:
    dac = DAC()  # the released 16 kHz DAC, 12 codebooks
    named = dict(dac.named_parameters())
    gains = sum(p.numel() for n, p in named.items() if n.endswith("weight.original0"))
    assert sum(p.numel() for p in named.values()) == 74_175_906  # weight-norm gains counted
    assert sum(p.numel() for p in named.values()) - gains == 74_141_697  # transformers' count
    parts = [sum(p.numel() for p in m.parameters()) for m in (dac.encoder, dac.decoder)]
    assert parts == [21_521_536, 52_334_690]
    assert (dac.frame_rate, dac.bitrate(12), dac.samples_per_frame) == (50.0, 6000.0, 320)
    # The ESC paper's DAC-Tiny: encoder 32 / decoder 288, 18 codebooks.
    tiny = DAC(encoder_dim=32, decoder_dim=288, quantizer=FactorizedRVQ(n_streams=18))
    assert sum(p.numel() for p in tiny.parameters()) == 8_191_092


@pytest.mark.parametrize("length", [1, 319, 320, 321, 4801])
def test_output_length_equals_input_length(length: int) -> None:
    codec = small_dac().eval()
    audio = 0.1 * torch.randn(2, length)
    codes = codec.encode(audio, 3)
    assert codes.shape == (2, 3, 1, max(1, -(-length // 320))) and codes.dtype == torch.int64
    assert codec.decode(codes, length).shape == (2, length)
    assert codec(audio, 4).audio.shape == (2, length)


def test_per_sample_quantizer_dropout_is_dacs_and_resumes_exactly() -> None:
    codec = small_dac(quantizer_dropout=0.5, dropout_seed=3).train()
    resumed = copy.deepcopy(codec)
    draws = torch.stack([codec.quantizer.streams_per_sample(6, 4, torch.device("cpu"))
                         for _ in range(40)])  # fmt: skip
    # DAC: the first floor(6 * 0.5) samples draw 1..4 streams, the others send all 4.
    assert (draws[:, 3:] == 4).all() and draws[:, :3].min() == 1 and draws[:, :3].max() == 4
    assert len({tuple(row.tolist()) for row in draws[:, :3]}) > 10
    # The draws follow the batches seen, a buffer saved with the weights: resuming continues.
    for _ in range(5):
        resumed.quantizer.streams_per_sample(6, 4, torch.device("cpu"))
    again = small_dac(quantizer_dropout=0.5, dropout_seed=3).train()
    again.load_state_dict(resumed.state_dict())
    assert torch.equal(again.quantizer.streams_per_sample(6, 4, torch.device("cpu")), draws[5])
    # Each sample is decoded from exactly its own streams (the others are masked out).
    audio = 0.1 * torch.randn(6, 1600)
    counts = copy.deepcopy(codec).quantizer.streams_per_sample(6, 4, torch.device("cpu"))
    trained = codec(audio, 4).audio
    codec.eval()
    with torch.no_grad():
        for i, count in enumerate(counts.tolist()):
            alone = codec(audio[i : i + 1], count).audio[0]
            torch.testing.assert_close(trained[i].detach(), alone, atol=1e-5, rtol=1e-4)


def test_dac_recipe_trains_every_parameter_and_refuses_spectrum_losses() -> None:
    codec = small_dac(quantizer_dropout=0.5)
    mel = {"linear_weight": 0.0, "mel_scale": "slaney", "mel_norm": "slaney"}
    weights = {"mel": 15.0, "waveform": 1.0, "commit": 0.25, "codebook": 1.0}
    # val_kbps: 4 streams of 4-bit codes at 50 frames/s.
    module = CodecModule(codec, loss_weights=weights, loss_args={"mel": mel}, pretrain_steps=0,
                         quantizer_dropout=0.0, val_kbps=[0.8])  # fmt: skip
    audio = 0.1 * torch.randn(4, 4800)
    terms = module.objective.generator_terms(audio, codec(audio, 4))
    assert set(terms) == set(weights)
    module.objective.total(terms).backward()
    assert all(p.grad is not None for p in codec.parameters())
    with pytest.raises(ValueError, match="it compares the decoder's predicted STFT, which DAC"):
        CodecModule(small_dac(), loss_weights={"stft": 1.0})
    with pytest.raises(ValueError, match="loss_args.mel has no option 'foo'"):
        CodecModule(small_dac(), loss_weights={"mel": 1.0}, loss_args={"mel": {"foo": 1}})


def test_slaney_filterbank_triangles_have_unit_area() -> None:
    fb = mel_filterbank(16000, 8192, 40, htk=False, norm="slaney")  # librosa's default, DAC's
    bin_hz = 8000 / 4096
    np.testing.assert_allclose(fb.sum(1).numpy() * bin_hz, 1.0, rtol=0.02)


def test_codebook_metrics_take_one_group() -> None:
    codec = small_dac().eval()
    metric = CodebookUsage(codec.max_streams, codec.num_groups, codec.codebook_size)
    metric.update(codec.encode(0.1 * torch.randn(2, 16000), 4))
    values = metric.compute()
    assert {"s1g1/usage", "s4g1/utilization", "bitrate_utilization"} <= set(values)
    assert 0 < float(values["bitrate_utilization"]) <= 1


def test_chunked_coding_equals_whole_file_coding() -> None:
    """The decoder reaches about 10 frames (0.2 s) and the encoder less, so escx's 1 s of context
    per chunk gives the whole file's codes and, to float rounding, its audio."""
    codec = small_dac().eval()
    audio = torch.from_numpy(speech_like(16000 * 5 + 77, seed=4))[None]
    whole = codec.encode(audio, 4)
    chunked = encode_chunked(codec, audio, audio.shape[-1], 4, chunk_frames=60, context_frames=50)
    assert torch.equal(chunked, whole)
    handle = escx.api.CodecHandle(codec, chunk_seconds=1.2)  # 60-frame chunks, 1 s context
    torch.testing.assert_close(
        handle.decode(whole, audio.shape[-1]), codec.decode(whole, audio.shape[-1]),
        atol=1e-6, rtol=0,
    )  # fmt: skip


def test_a_dac_file_is_refused_by_an_stft_model_in_one_line(tmp_path: Path) -> None:
    torch.manual_seed(0)
    dac = escx.build_codec({"codec": SMALL_CONFIG})
    dac_model = save_codec_checkpoint(dac, SMALL_CONFIG, tmp_path / "dac.ckpt")
    esc_model = make_checkpoint(tmp_path / "esc.ckpt")
    source = write_wav(tmp_path / "a.wav", speech_like(8000))
    assert main(["compress", str(source), "-o", str(tmp_path / "a.escx"), "--model",
                 str(dac_model)]) == 0  # fmt: skip
    assert read_header((tmp_path / "a.escx").read_bytes()).codec_family == "waveform"
    run = _run("decompress", "a.escx", "-o", "b.wav", "--model", esc_model, cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [
        "escx: error: a.escx: made by a waveform codec, this model (STFTCodec) is a stft codec; "
        "decompress with the model that compressed it"
    ]
    assert not (tmp_path / "b.wav").exists()


def test_fit_refuses_a_spectrum_loss_for_a_waveform_codec_in_one_line(tmp_path: Path) -> None:
    run = _run("fit", "--config", EXPERIMENTS / "dac.yaml", "--config",
               EXPERIMENTS / "dac-tiny.yaml", "--model.loss_weights={stft: 1.0, mel: 15.0}",
               "--trainer.default_root_dir", "run", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [
        "escx: error: loss_weights gives stft a weight, but it compares the decoder's predicted "
        "STFT, which DAC does not produce (it decodes samples); set it to 0 and use mel, mrstft, "
        "waveform or sisdr"
    ]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_cross_scale_quantizer_is_refused_by_dac_in_one_line() -> None:
    overlay = {"model": {"codec": {"init_args": {"quantizer": {"class_path": "CrossScaleRVQ"}}}}}
    with pytest.raises(ValueError, match="6 streams need 5 decoder stages, the decoder has 0"):
        escx.build_codec(EXPERIMENTS / "dac.yaml", EXPERIMENTS / "dac-tiny.yaml", overlay)


@pytest.mark.slow
@pytest.mark.skipif(not SPEECH.is_dir(), reason=f"real speech not found at {SPEECH}")
def test_tiny_dac_fits_then_codes_a_real_file_to_the_same_length(tmp_path: Path) -> None:
    """Two data-parallel processes (DDP on the CPU) train a few steps; the checkpoint then
    compresses a real file at 3 kbps and decompresses it to exactly its length."""
    fit = _run("fit", "--config", EXPERIMENTS / "dac.yaml", "--config",
               EXPERIMENTS / "dac-tiny.yaml", "--data.train", SPEECH / "train", "--data.val",
               SPEECH / "val", "--data.max_val_files", 2, "--trainer.max_steps", 6,
               "--trainer.val_check_interval", 6, "--trainer.logger", "false",
               "--trainer.accelerator", "cpu", "--trainer.devices", 2, "--trainer.strategy",
               "ddp", "--trainer.default_root_dir", "run", cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # The best checkpoint follows PESQ at the highest validated bitrate (6 kbps here, not 9).
    best = torch.load(ckpt, weights_only=True)["callbacks"]
    monitors = [state["monitor"] for key, state in best.items() if "EscxCheckpoint" in key]
    assert monitors == ["val/pesq@6kbps"]
    assert list((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    source = sorted((SPEECH / "val").glob("*.flac"))[0]
    packed = tmp_path / "speech.escx"
    compress = _run("compress", source, "-o", packed, "--model", ckpt, "--kbps", 3, cwd=tmp_path)
    assert compress.returncode == 0, compress.stderr[-3000:]
    header = read_header(packed.read_bytes())
    assert (header.codec_family, header.num_streams, header.num_groups) == ("waveform", 6, 1)
    out = tmp_path / "speech.wav"
    decompress = _run("decompress", packed, "-o", out, "--model", ckpt, cwd=tmp_path)
    assert decompress.returncode == 0, decompress.stderr[-3000:]
    assert sf.info(out).frames == sf.info(source).frames
    restored = sf.read(out)[0]
    assert np.isfinite(restored).all() and np.abs(restored).max() > 0
