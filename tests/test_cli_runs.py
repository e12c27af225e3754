"""Training runs through the installed ``escx`` command, as a user types it: multi-process DDP
with metrics reduced across ranks, SIGTERM and Ctrl-C with exact resume, one run per folder,
W&B run continued, drivers that stop, the recipe study over two seeds with its report, and no
third-party noise in a run's output."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from report_pages import parse_report
from tools_fixtures import HAVE_OPUS
from training_helpers import ESC, REPO, TINY, cli_env, logged_losses, write_corpus

import escx
from escx.data.datamodule import AudioDataModule
from escx.metrics import MelDistance

ESCX = str(Path(sys.executable).parent / "escx")  # the console script pip installed


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "train", 8, 0.6, seed=3)


def _fit_args(train: Path, root: str, steps: int, *extra: str) -> list[str]:
    return [
        ESCX, "fit", "--config", str(ESC), "--config", str(TINY),
        "--data.train", str(train), "--data.val", "null",
        "--trainer.default_root_dir", root, "--trainer.max_steps", str(steps), *extra,
    ]  # fmt: skip


CSV_LOGGER = [
    "--trainer.logger=CSVLogger",
    "--trainer.logger.init_args.save_dir=logs",
    "--trainer.logger.init_args.flush_logs_every_n_steps=1",
]

# CSV for the loss curves, and W&B (offline) to see that a resumed run continues its W&B run.
CSV_AND_WANDB = """
trainer:
  logger:
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args: {save_dir: logs, flush_logs_every_n_steps: 1}
    - class_path: lightning.pytorch.loggers.WandbLogger
      init_args: {project: escx, save_dir: ., offline: true}
"""


# What every run used to print and a newcomer should not have to read (escx/training/quiet.py).
NOISE = (
    "litlogger",  # Lightning's product tip
    "litmodels",
    "anonymous setting has no effect",  # W&B, from the anonymous=None Lightning passes it
    "isinstance(treespec, LeafSpec)",  # torch's deprecation of a call inside Lightning
    "to a scalar may lead to unexpected behavior",  # torch, float() of a tensor needing grad
)


def _assert_quiet(output: str) -> None:
    heard = [noise for noise in NOISE if noise in output]
    assert not heard, f"noise in the run's output: {heard}\n{output[-3000:]}"


def _codec_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("codec.")}


def _wait_for_training(process: subprocess.Popen, folder: Path, rows: int) -> None:
    """Until the run has logged ``rows`` training steps (its signal handlers are installed)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before it could be interrupted"
        if len(logged_losses(folder)) >= rows:
            return
        time.sleep(0.05)
    raise AssertionError("the run did not start training in time")


def test_ddp_through_the_console_script_from_another_folder(corpus, tmp_path):
    """`escx fit --trainer.devices 2` from outside the checkout: both ranks end with identical
    weights and draw the same streams per batch, validation metrics are reduced across ranks to
    what one process computes over the whole validation set, and one set of checkpoints is
    written."""
    val = write_corpus(tmp_path / "val", 4, 0.5, seed=2)
    cmd = _fit_args(corpus, "run", 4, "--data.val", str(val), "--trainer.val_check_interval", "4",
                    "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                    "--trainer.strategy", "ddp", "--trainer.logger", "false",
                    "--trainer.callbacks+=training_helpers.RankDump")  # fmt: skip
    result = subprocess.run(
        cmd, cwd=tmp_path, env=cli_env(ESCX_PROBE_DIR=str(tmp_path)), capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sync_dist=True" not in result.stderr  # metrics are already reduced: no advice
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["best-step=4.ckpt", "last.ckpt"]  # one of each, not one per rank
    probes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert probes[0]["world"] == 2
    assert probes[0]["streams"] == probes[1]["streams"]  # one quantizer-dropout draw per batch
    assert probes[0]["metrics"] == probes[1]["metrics"]  # metrics reduced across ranks
    # The reduced value equals a single-process evaluation of the whole validation set.
    codec = escx.build_codec(str(ESC), str(TINY))
    codec.load_state_dict({k[6:]: v for k, v in states[0].items() if k.startswith("codec.")})
    codec.eval()
    data = AudioDataModule(train=None, val=str(val), val_segment_samples=8000, batch_size=2)
    metric = MelDistance()
    for batch in data._eval_loader("val"):
        metric.update(codec(batch, 6).audio, batch)
    assert probes[0]["metrics"]["val/mel_distance@9kbps"] == pytest.approx(
        float(metric.compute()), rel=1e-4
    )


@pytest.mark.slow  # a minute or more of training through the console script
def test_sigterm_then_resume_equals_an_uninterrupted_run(corpus, tmp_path):
    steps = 12
    loggers = tmp_path / "loggers.yaml"
    loggers.write_text(CSV_AND_WANDB)
    env = cli_env(WANDB_MODE="offline", WANDB_SILENT="true")
    cmd = _fit_args(corpus, ".", steps, "--config", str(loggers))
    (tmp_path / "full").mkdir()
    # Not silent: W&B's own warnings must show in this run for the noise check below.
    loud = {k: v for k, v in env.items() if k != "WANDB_SILENT"}
    full = subprocess.run(
        cmd, cwd=tmp_path / "full", env=loud, capture_output=True, text=True, timeout=600
    )
    assert full.returncode == 0, full.stderr[-2000:]
    _assert_quiet(full.stdout + full.stderr)  # a plain run prints no third-party noise
    reference = logged_losses(tmp_path / "full")
    assert sorted(reference) == list(range(steps))

    folder = tmp_path / "stopped"
    folder.mkdir()
    run = subprocess.Popen(cmd, cwd=folder, env=env, stderr=subprocess.PIPE, text=True)
    _wait_for_training(run, folder, rows=3)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr.splitlines()[-1]
    before_stop = logged_losses(folder)
    last = folder / "checkpoints" / "last.ckpt"
    done = torch.load(last, weights_only=True)["global_step"]  # optimizer steps in last.ckpt
    assert 3 <= done < steps
    # Lightning stops after the batch in flight and before logging it: at most that one is missing.
    assert set(range(done - 1)) <= set(before_stop) <= set(range(done))

    # Starting a new run in the folder is refused, and nothing in it changes.
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    again = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    errors = [line for line in again.stderr.splitlines() if line.startswith("escx:")]
    assert len(errors) == 1 and "--ckpt_path last" in errors[0], again.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == before

    # A temporary left by a writer killed on this host is removed by the next checkpoint write.
    from escx.atomic import HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = last.parent / f".last.ckpt.{dead.pid}-{HOST}.abcd1234.tmp"
    stale.write_bytes(b"partial")

    resumed = subprocess.run(
        [*cmd, "--ckpt_path", "last"], cwd=folder, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Restored all states" in resumed.stdout + resumed.stderr
    assert not stale.exists()
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no last-v1.ckpt
    after = {k: v for k, v in logged_losses(folder).items() if k not in before_stop}
    assert sorted(after) == list(range(done, steps))  # the resumed run continues the count
    for step, loss in {**before_stop, **after}.items():
        assert loss == pytest.approx(reference[step], rel=1e-5, abs=1e-7), step
    ours, theirs = _codec_state(last), _codec_state(tmp_path / "full/checkpoints/last.ckpt")
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-6, msg=name)
    # The resumed run continued the stopped run's W&B run (same id, a second offline folder).
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({run.name.rsplit("-", 1)[1] for run in runs}) == 1


def test_ctrl_c_exits_130_after_writing_last_ckpt(corpus, tmp_path):
    run = subprocess.Popen(
        _fit_args(corpus, ".", 500, *CSV_LOGGER), cwd=tmp_path, env=cli_env(),
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for_training(run, tmp_path, rows=2)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr[-2000:]
    assert "stopped by Ctrl-C" in stderr
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_a_killed_writer_leaves_no_temporary_after_the_next_write(tmp_path):
    target = tmp_path / "last.ckpt"
    writer = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\nfrom escx.atomic import atomic_path\n"
            f"with atomic_path({str(target)!r}) as tmp:\n"
            "    tmp.write_bytes(b'half a checkpoint')\n"
            "    print('writing', flush=True)\n    time.sleep(60)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".last.ckpt.")  # what kill -9 leaves

    from escx.checkpoint import atomic_torch_save

    atomic_torch_save({"w": torch.ones(2)}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_quick_recipe_through_the_console_script(corpus, tmp_path):
    """The quick recipe overlay trains as it says: its loss terms, and WarmupCosineLR bound to
    the run's max_steps (the warmup's first steps at 1/100, 2/100, ... of the 3e-3 peak)."""
    quick = REPO / "experiments" / "recipes" / "quick.yaml"
    args = _fit_args(corpus, "run", 6, "--config", str(quick), "--model.pretrain_steps", "3",
                     "--trainer.log_every_n_steps", "1", *CSV_LOGGER)  # fmt: skip
    done = subprocess.run(args, cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = []
    for file in sorted((tmp_path / "logs").glob("version_*/metrics.csv")):
        with open(file) as handle:
            rows += [r for r in csv.DictReader(handle) if r.get("train/lr")]
    rates = {int(r["step"]): float(r["train/lr"]) for r in rows}
    assert rates == pytest.approx({k: 3e-3 * (k + 1) / 100 for k in range(6)})
    assert all(r["train/loss/waveform"] and r["train/loss/compressed_spectrum"] for r in rows)
    assert not any(r.get("train/loss/stft") for r in rows)


@pytest.mark.slow  # a minute or more of training through the console script
def test_recipe_ablation_with_two_seeds_through_the_console_script(tmp_path):
    """`escx ablation recipe --seeds 1 2` from a clean folder: per seed, both recipes trained,
    evaluated at every bitrate and validated at every step (results, configs, curves, report in
    seed-N/); every seed's rows and their spread beside them; equal seeds refused in one line."""
    data = tmp_path / "data"
    write_corpus(data / "train", 4, 0.6, seed=5)
    write_corpus(data / "val", 1, 0.5, seed=6)
    args = [ESCX, "ablation", "recipe", "--seeds", "1", "2", "--steps", "2", "--data", str(data),
            "--out", "out", "--eval-files", "1", "--listen", "1", "--no-model-metrics",
            "--config", str(TINY)]  # fmt: skip
    env = cli_env(WANDB_MODE="offline")
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    quick_overlay = yaml.safe_load((REPO / "experiments/recipes/quick.yaml").read_text())["model"]
    for seed in ("1", "2"):
        study = out / f"seed-{seed}"
        assert (study / "report.html").is_file()
        with open(study / "results.csv") as file:
            rows = list(csv.DictReader(file))
        trained = [r for r in rows if r["variant"] != "opus"]
        pairs = {(r["variant"], r["recipe"]) for r in trained}
        assert pairs == {("esc", "esc"), ("quick", "quick")}
        assert len(trained) == 12  # 2 recipes x 6 bitrates
        # Opus beside the study's rows on the same clips, where libopus is installed.
        assert len(rows) - len(trained) == (3 if HAVE_OPUS else 0)
        document = json.loads((study / "results.json").read_text())
        caption = document["caption"]
        assert "reduced-size models (" in caption and "2 training steps" in caption
        assert "quick: quick recipe (experiments/esc.yaml + experiments/tiny.yaml + " \
            "experiments/recipes/quick.yaml + tests/configs/tiny-test.yaml" in caption  # fmt: skip
        assert "esc: esc recipe (experiments/esc.yaml + experiments/tiny.yaml + tests/" in caption
        quick_row = next(r for r in document["rows"] if r["variant"] == "quick")
        assert "experiments/recipes/quick.yaml" in quick_row["configs"]
        for name in ("quality_vs_bitrate.png", "codebook_utilization.png", "quality_vs_step.png"):
            assert (study / name).stat().st_size > 0
        # The quick run trained with the overlay's loss weights; ESC's run with the defaults.
        configs = {p.stem: yaml.safe_load(p.read_text()) for p in (study / "configs").iterdir()}
        assert sorted(configs) == ["esc", "quick"]
        if "loss_weights" in quick_overlay:
            assert configs["quick"]["model"]["loss_weights"] == quick_overlay["loss_weights"]
            assert configs["esc"]["model"]["loss_weights"] != quick_overlay["loss_weights"]
        # Curves: each run validated after every step at 1.5 and 9 kbps, read from its CSV log.
        with open(study / "curves.csv") as file:
            points = list(csv.DictReader(file))
        for run in ("esc", "quick"):
            for metric in ("pesq", "sisdr", "mel_distance"):
                for kbps in ("1.5", "9"):
                    steps = [p["step"] for p in points if (p["run"], p["metric"], p["kbps"]) ==
                             (run, metric, kbps)]  # fmt: skip
                    assert steps == ["1", "2"], (seed, run, metric, kbps)
        assert len(list((study / "runs").glob("*/wandb/offline-run-*"))) == 2  # both W&B runs
        # The listening page: one table per bitrate (lowest, highest), one row per clip, one
        # column per recipe after the original; the summary table and the curves shown.
        page = parse_report(study / "report.html")
        grids = [t for t in page.tables if t.cls == "listen"]
        assert len(grids) == 2
        for grid in grids:
            assert grid.header[:4] == ["clip", "original", "esc", "quick"]
            assert len(grid.rows) == 1 and all(len(cell["audio"]) == 1 for cell in grid.rows[0][1:])
        # Opus at 9 kbps beside the highest bitrate's players, where libopus is installed.
        assert [g.header[4:] for g in grids] == [[], ["opus"] if HAVE_OPUS else []]
        (table,) = [t for t in page.tables if t.cls == "summary"]
        assert table.header[:2] == ["variant", "recipe"] and len(table.rows) == len(rows)
        assert 'src="quality_vs_step.png"' in (study / "report.html").read_text()
    with open(out / "results.csv") as file:
        assert sorted({row["seed"] for row in csv.DictReader(file)}) == ["1", "2"]
    summary = (out / "summary.md").read_text()
    assert "| quick | 9 | 2 |" in summary and "seeds 1, 2" in summary
    assert summary in done.stdout + "\n" and (out / "quality_spread.png").stat().st_size > 0
    refused = subprocess.run([ESCX, "ablation", "pretrain", "--seeds", "3", "3"], cwd=tmp_path,
                             env=env, capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        == "escx ablation: error: --seeds must differ, got [3, 3] (see --help)"
    )
