"""End-to-end training tests on CPU: fit through pre-training into quantized training, exact
resume after an interruption, bad runs stopped in one line. Multi-process DDP runs through the
console script in test_cli_runs.py."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from training_helpers import ESC, TINY, write_corpus

import escx
from escx.cli import main
from escx.data.datamodule import AudioDataModule
from escx.training.module import CodecModule
from escx.training.schedule import Phase


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    return write_corpus(root / "train", 8, 0.6, seed=1), write_corpus(root / "val", 4, 0.5, seed=2)


def test_fit_pretrains_then_quantizes_and_logs_to_wandb_offline(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    train, val = corpus
    code = main(
        ["fit", "--config", str(ESC), "--config", str(TINY),
         "--data.train", str(train), "--data.val", str(val),
         "--trainer.default_root_dir", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["escx"]["batches_seen"] == 4
    assert ckpt["escx"]["phase"] == Phase.QUANTIZED.value
    assert (tmp_path / "config.yaml").is_file()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    media = runs[0] / "files" / "media"
    assert list(media.rglob("*.wav")) and list(media.rglob("*.png"))  # audio, spectrograms, heatmap
    best = next(v for k, v in ckpt["callbacks"].items() if "EscxCheckpoint" in k)
    assert best["monitor"] == "val/pesq@9kbps" and 1.0 < float(best["best_model_score"]) < 4.7
    # The stored codec config rebuilds the trained codec.
    codec = escx.build_codec({"codec": ckpt["escx"]["codec_config"]})
    weights = {k[6:]: v for k, v in ckpt["state_dict"].items() if k.startswith("codec.")}
    codec.load_state_dict(weights)


def _trainer(root: Path, max_steps: int, callbacks=()) -> L.Trainer:
    return L.Trainer(
        default_root_dir=root,
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[escx_checkpoint(), *callbacks],
        deterministic=True,
    )


def escx_checkpoint():
    from escx.training.checkpointing import EscxCheckpoint

    return EscxCheckpoint(monitor=None)


def _module() -> CodecModule:
    codec = escx.build_codec(str(ESC), str(TINY))
    return CodecModule(codec, pretrain_steps=3, val_kbps=[9.0], audio_examples=0)


class LossRecorder(L.Callback):
    def __init__(self, stop_after: int | None = None) -> None:
        self.losses: list[float] = []
        self.stop_after = stop_after

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))
        if self.stop_after is not None and pl_module.batches_seen == self.stop_after:
            raise KeyboardInterrupt


def _datamodule(train: Path) -> AudioDataModule:
    return AudioDataModule(train=str(train), val=None, batch_size=2, segment_samples=6400)


def test_resume_after_interrupt_matches_uninterrupted_run(corpus, tmp_path):
    train, _ = corpus
    steps, stop = 7, 5  # 4 batches per epoch: stops mid-epoch 1, after the phase switch at 3

    L.seed_everything(7)
    full = LossRecorder()
    model = _module()
    _trainer(tmp_path / "full", steps, [full]).fit(model, _datamodule(train))
    reference = {k: v.clone() for k, v in model.codec.state_dict().items()}

    L.seed_everything(7)
    first = LossRecorder(stop_after=stop)
    interrupted = _trainer(tmp_path / "resumed", steps, [first])
    with pytest.raises(SystemExit):  # Lightning exits after handling Ctrl-C
        interrupted.fit(_module(), _datamodule(train))
    assert interrupted.interrupted
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_file()

    L.seed_everything(123)  # resuming must not depend on the global seed
    second = LossRecorder()
    resumed = _module()
    _trainer(tmp_path / "resumed", steps, [second]).fit(
        resumed, _datamodule(train), ckpt_path="last"
    )
    assert resumed.batches_seen == steps
    assert first.losses + second.losses == pytest.approx(full.losses, rel=1e-6, abs=1e-7)
    for name, value in resumed.codec.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=1e-5, atol=1e-6, msg=name)


def test_non_finite_loss_stops_the_run_naming_step_and_term(corpus, tmp_path, monkeypatch, recwarn):
    from escx.training.objective import NonFiniteLossError

    train, _ = corpus
    model = _module()
    real_terms = model.objective.generator_terms

    def poisoned(audio, out, *args, **kwargs):
        terms = real_terms(audio, out, *args, **kwargs)
        if model.batches_seen == 2:
            terms["mel"] = terms["mel"] * float("nan")
        return terms

    monkeypatch.setattr(model.objective, "generator_terms", poisoned)
    before = {k: v.clone() for k, v in model.codec.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"batch 2: term 'mel'"):
        _trainer(tmp_path, 5).fit(model, _datamodule(train))
    assert any(not torch.equal(before[k], v) for k, v in model.codec.state_dict().items())
    for value in model.codec.state_dict().values():  # weights never saw the bad loss
        assert torch.isfinite(value.float()).all()
    # The message is built from a detached value: no "requires_grad ... to a scalar" warning.
    assert not [w for w in recwarn if "to a scalar" in str(w.message)]


def test_training_on_a_folder_without_audio_fails_at_start(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not audio")
    root = str(tmp_path / "run")
    code = main(["fit", "--config", str(ESC), "--config", str(TINY),
                 "--data.train", str(empty), "--data.val", "null",
                 "--trainer.default_root_dir", root, "--trainer.logger", "false"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("escx: error:") and "no usable audio" in err[-1]


def test_an_interrupted_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    from escx.training.checkpointing import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    good = path.read_bytes()

    def dies_half_way(obj, file, *args, **kwargs):
        file.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left


def test_unknown_training_option_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ESC), "--model.not_an_option", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unrecognized arguments: --model.not_an_option" in err
