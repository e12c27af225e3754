"""Data sources, datasets, the datamodule, the synthetic corpus and `make data` preparation."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub name then fails in ~1 s instead of ~24 s
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from escx.audio import find_audio_files, read_audio  # noqa: E402
from escx.data import (  # noqa: E402
    AudioDataModule,
    EpochShuffleSampler,
    FixedSegmentDataset,
    HFSourceError,
    ManifestError,
    NoUsableAudioError,
    RandomCropDataset,
    StreamingCropDataset,
    folder_items,
    generate_corpus,
    manifest_items,
    open_hf_dataset,
    parse_source,
)
from escx.data.convert import plan_split  # noqa: E402
from escx.data.prepare import main as prepare_main  # noqa: E402

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "speech"
SEG = 47920


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """6 synthetic 4-s files (longer than a 3-s crop) plus one 1-s file (shorter)."""
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, 6, 4.0, seed=1, n_speakers=3)
    generate_corpus(root / "short", 1, 1.0, seed=2)
    return root


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_home" / "datasets"))
    return tmp_path


def batches(loader) -> list[torch.Tensor]:
    return [b.clone() for b in loader]


# ---- sources -----------------------------------------------------------------------------


def test_parse_source_forms():
    assert parse_source("data/train").kind == "folder"
    assert parse_source("lists/a.CSV").kind == "manifest"
    assert parse_source("lists/a.jsonl").kind == "manifest"
    spec = parse_source("hf:openslr/librispeech_asr:train.100[:10]")
    assert (spec.location, spec.split) == ("openslr/librispeech_asr", "train.100[:10]")
    assert parse_source("hf:./local").split is None
    with pytest.raises(ValueError, match="hf:NAME"):
        parse_source("hf:")


def test_folder_source_lists_audio_recursively(corpus):
    items = folder_items(corpus)
    assert len(items) == 7 and all(i.path.suffix == ".flac" for i in items)
    with pytest.raises(NoUsableAudioError, match="not found"):
        folder_items(corpus / "missing")


def test_csv_manifest_resolves_relative_paths_and_reads_duration(corpus, tmp_path):
    files = sorted(corpus.glob("*.flac"))
    manifest = tmp_path / "lists" / "train.csv"
    manifest.parent.mkdir()
    rel = os.path.relpath(files[0], manifest.parent)
    manifest.write_text(f"path,duration,text\n{rel},4.0,hello\n{files[1]},,x\n")
    items = manifest_items(manifest)
    assert [i.path.resolve() for i in items] == [files[0].resolve(), files[1]]
    assert [i.duration for i in items] == [4.0, None]
    assert len(RandomCropDataset(items)) == 2


def test_jsonl_manifest_accepts_nemo_keys(corpus, tmp_path):
    files = sorted(corpus.glob("*.flac"))
    lines = [{"audio_filepath": str(files[0]), "duration": 4.0}, {"path": files[1].name}]
    (corpus / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    items = manifest_items(corpus / "m.jsonl")
    assert [i.path for i in items] == files[:2]
    (corpus / "m.jsonl").unlink()


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("a.csv", "name,duration\nx.wav,1\n", "line 2: no file path"),
        ("b.csv", "path,duration\nx.wav,soon\n", "line 2: duration must be"),
        ("c.jsonl", '{"path": "x.wav"}\nnot json\n', "line 2: invalid JSON"),
        ("d.jsonl", "[1, 2]\n", "line 1: expected a JSON object"),
    ],
)
def test_bad_manifests_name_the_line(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError, match=words):
        manifest_items(tmp_path / name)


def _save_hf(root: Path, files: list[Path], how: str) -> Path:
    from datasets import Audio, Dataset, DatasetDict

    if how == "paths":
        ds = Dataset.from_dict({"audio": [str(f) for f in files], "text": ["t"] * len(files)})
    else:
        rows = [{"bytes": f.read_bytes(), "path": f.name} for f in files]
        ds = Dataset.from_dict({"audio": rows})
    if how == "audio_feature":  # the hub's usual form; decoding it would need torchcodec
        ds = ds.cast_column("audio", Audio())
        ds = DatasetDict({"train": ds, "validation": ds.select([0])})
    ds.save_to_disk(str(root / how))
    return root / how


@pytest.mark.parametrize("how", ["paths", "bytes", "audio_feature"])
def test_local_hf_dataset_source(corpus, hf_env, how):
    path = _save_hf(hf_env, sorted(corpus.glob("*.flac"))[:4], how)
    dm = AudioDataModule(train=f"hf:{path}", val=f"hf:{path}", batch_size=2, max_val_files=1)
    dm.setup("fit")
    assert [b.shape for b in dm.train_dataloader()] == [(2, SEG)] * 2
    assert [b.shape for b in dm.val_dataloader()] == [(1, SEG)]


def test_hf_streaming_training_and_errors(corpus, hf_env):
    path = _save_hf(hf_env, sorted(corpus.glob("*.flac"))[:4], "audio_feature")
    dm = AudioDataModule(train=f"hf:{path}:train", val=None, batch_size=2, streaming=True)
    dm.setup("fit")
    assert isinstance(dm.datasets["train"], StreamingCropDataset)
    loader = dm.train_dataloader()
    first, second = batches(loader), batches(loader)
    assert [b.shape for b in first] == [(2, SEG)] * 2
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))  # new epoch
    with pytest.raises(HFSourceError, match="no split 'nope'; available: train, validation"):
        open_hf_dataset(str(path), "nope")
    with pytest.raises(HFSourceError, match="no column 'wav'"):
        open_hf_dataset(str(path), audio_column="wav")
    with pytest.raises(HFSourceError, match="HF_HUB_OFFLINE"):
        open_hf_dataset("no-such-user/no-such-dataset")


# ---- datasets ----------------------------------------------------------------------------


def test_random_crops_are_seeded_and_change_per_epoch(corpus):
    items = folder_items(corpus)
    a, b = RandomCropDataset(items, seed=7), RandomCropDataset(items, seed=7)
    assert all(torch.equal(a[i], b[i]) for i in range(len(a)))
    k = next(i for i, f in enumerate(a.files) if f.frames > SEG)
    assert a[k].shape == (SEG,) and a[k].dtype == torch.float32
    assert not torch.equal(a[(k, 0)], a[(k, 1)])  # another epoch, another crop
    assert not torch.equal(a[k], RandomCropDataset(items, seed=8)[k])
    a.set_epoch(1)
    assert torch.equal(a[k], b[(k, 1)])


def test_crop_is_a_window_of_the_file_and_short_files_are_padded(corpus):
    ds = RandomCropDataset(folder_items(corpus))
    k = next(i for i, f in enumerate(ds.files) if f.frames > SEG)
    whole = read_audio(ds.files[k].item.path)[0]
    crop = ds[k].numpy()
    starts = [i for i in range(len(whole) - SEG + 1) if np.array_equal(whole[i : i + 4], crop[:4])]
    assert any(np.array_equal(whole[s : s + SEG].numpy(), crop) for s in starts)
    short = next(i for i, f in enumerate(ds.files) if f.frames == 16000)
    assert ds[short].shape == (SEG,) and torch.all(ds[short][16000:] == 0)
    assert RandomCropDataset(folder_items(corpus), segment_seconds=1.0)[0].shape == (16000,)


def test_fixed_segments_are_identical_across_calls(corpus):
    items = folder_items(corpus)
    a, b = FixedSegmentDataset(items), FixedSegmentDataset(items)
    assert len(a) == 7
    assert all(torch.equal(a[i], a[i]) and torch.equal(a[i], b[i]) for i in range(len(a)))
    k = next(i for i, f in enumerate(a.files) if f.frames > SEG)
    whole = read_audio(a.files[k].item.path)[0]
    assert torch.equal(a[k], whole[:SEG])
    cut = FixedSegmentDataset(items, segment_samples=16000, max_segments_per_file=None)
    assert len(cut) == 6 * 4 + 1
    assert torch.equal(cut[cut.segments.index((k, 16000))], whole[16000:32000])
    assert len(FixedSegmentDataset(items, max_files=2)) == 2
    full = FixedSegmentDataset(items, segment_samples=None)
    assert sorted({len(full[i]) for i in range(len(full))}) == [16000, 64000]


def test_epoch_sampler_is_a_seeded_permutation():
    s = EpochShuffleSampler(10, seed=3)
    first = list(s)
    assert sorted(i for i, _ in first) == list(range(10)) and {e for _, e in first} == {0}
    assert list(s) == first
    s.set_epoch(1)
    assert [i for i, _ in s] != [i for i, _ in first]


def _bad_folder(tmp_path: Path, good: Path) -> Path:
    root = tmp_path / "mixed"
    root.mkdir()
    for f in sorted(good.glob("*.flac"))[:2]:
        shutil.copy(f, root / f.name)
    (root / "broken.wav").write_text("not audio")
    (root / "empty.flac").write_bytes(b"")
    sf.write(root / "silent.wav", np.zeros(0, np.float32), 16000)
    return root


def test_unreadable_files_are_skipped_with_one_counting_warning(corpus, tmp_path, caplog):
    root = _bad_folder(tmp_path, corpus)
    with caplog.at_level(logging.WARNING):
        ds = RandomCropDataset(folder_items(root), label=str(root))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(ds) == 2 and len(warnings) == 1
    assert "skipped 3 of 5 files (unreadable or empty): first:" in warnings[0]
    assert "broken.wav" in warnings[0]


def test_no_usable_audio_is_a_clear_error(tmp_path, corpus):
    (tmp_path / "empty").mkdir()
    dm = AudioDataModule(train=str(tmp_path / "empty"), val=None)
    with pytest.raises(NoUsableAudioError, match=r"0 of 0 files readable; run `make data`"):
        dm.setup("fit")
    root = _bad_folder(tmp_path, corpus)
    for f in root.glob("*.flac"):
        if f.stat().st_size:
            f.unlink()
    with pytest.raises(NoUsableAudioError, match=r"0 of 3 files readable \(first: "):
        RandomCropDataset(folder_items(root))
    with pytest.raises(NoUsableAudioError, match="--data.train"):
        AudioDataModule(train=str(tmp_path / "nowhere")).setup("fit")


# ---- datamodule --------------------------------------------------------------------------


def test_datamodule_loaders_give_float_batches_of_esc_clips(corpus):
    dm = AudioDataModule(train=str(corpus), val=str(corpus), batch_size=3, val_batch_size=4)
    dm.setup("fit")
    train, val = batches(dm.train_dataloader()), batches(dm.val_dataloader())
    assert [b.shape for b in train] == [(3, SEG)] * 2  # 7 files, full batches only
    assert [b.shape for b in val] == [(4, SEG), (3, SEG)]
    assert all(b.dtype == torch.float32 for b in train + val)
    again = AudioDataModule(train=str(corpus), val=str(corpus), batch_size=3)
    again.setup("fit")
    assert all(
        torch.equal(a, b) for a, b in zip(train, batches(again.train_dataloader()), strict=True)
    )
    loader = again.train_dataloader()
    loader.sampler.set_epoch(1)  # what Lightning does at each epoch start
    assert not torch.equal(train[0], batches(loader)[0])


def test_datamodule_options_and_errors(corpus):
    dm = AudioDataModule(train=str(corpus), val=None, val_segment_samples=None, test=str(corpus))
    dm.setup("fit")
    assert dm.val_dataloader() == []
    dm.setup("test")
    assert {b.shape[0] for b in dm.test_dataloader()} == {1}  # whole files, batch size 1
    with pytest.raises(ValueError, match="--data.test"):
        AudioDataModule(train=str(corpus)).setup("test")
    with pytest.raises(ValueError, match="batch_size must be positive"):
        AudioDataModule(batch_size=0)


def test_datamodule_trains_with_lightning(corpus, tmp_path):
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen: list[torch.Tensor] = []

        def training_step(self, batch, _):
            self.seen.append(batch.clone())
            return self.w * batch.mean()

        def validation_step(self, batch, _):
            assert batch.shape[1] == SEG

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = Probe()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, AudioDataModule(train=str(corpus), val=str(corpus), batch_size=7))
    assert len(model.seen) == 2 and model.seen[0].shape == (7, SEG)
    assert not torch.equal(model.seen[0], model.seen[1])  # epoch 2 got new order and crops


# ---- synthetic corpus and preparation ----------------------------------------------------


def test_synthetic_corpus_is_labelled_and_speech_like(corpus):
    files = sorted(corpus.glob("*.flac"))
    assert "SYNTHETIC" in (corpus / "README.txt").read_text() and (corpus / "SYNTHETIC").exists()
    assert all(f.name.startswith("synthetic-spk") for f in files)
    info = sf.info(files[0])
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 64000)
    x = read_audio(files[0])[0].numpy()
    frames = x[: len(x) // 400 * 400].reshape(-1, 400)
    energy = 10 * np.log10((frames**2).mean(1) + 1e-12)
    assert 0.05 < np.abs(x).max() < 1.0 and energy.max() - energy.min() > 25  # pauses exist


def _speech_or_synthetic(tmp_path: Path) -> Path:
    """A flat folder of 8 files from 4 speakers, plus one 44.1 kHz stereo wav."""
    src = tmp_path / "src"
    src.mkdir()
    if SPEECH.is_dir():
        names = sorted(p.name for p in (SPEECH / "val").glob("*.flac"))
        by_spk: dict[str, list[str]] = {}
        for n in names:
            by_spk.setdefault(n.split("_")[0], []).append(n)
        for spk in sorted(by_spk)[:4]:
            for n in by_spk[spk][:2]:
                shutil.copy(SPEECH / "val" / n, src / n)
    else:
        generate_corpus(src, 8, 1.0, seed=5, n_speakers=4)
        (src / "README.txt").unlink()
    first = sorted(src.glob("*.flac"))[0]
    x = read_audio(first)[0].numpy()[:16000]
    stereo = np.stack([x, x], 1)
    sf.write(src / (first.stem.split("_")[0] + "_hi.wav"), stereo.repeat(3, 0)[:44100], 44100)
    return src


def test_prepare_from_local_folder_splits_by_speaker(tmp_path):
    src = _speech_or_synthetic(tmp_path)
    out = tmp_path / "data"
    assert prepare_main(["--source", str(src), "--out", str(out), "--val-fraction", "0.25"]) == 0
    train, val = find_audio_files(out / "train"), find_audio_files(out / "val")
    assert len(train) + len(val) == 9 and train and val
    speakers = [{p.name.split("_")[0] for p in files} for files in (train, val)]
    assert not speakers[0] & speakers[1]
    for f in train + val:
        info = sf.info(f)
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    assert sorted(p.name for p in out.iterdir()) == ["train", "val"]  # no staging left


def test_prepare_keeps_existing_data_unless_forced(tmp_path, caplog):
    out = tmp_path / "data"
    args = ["--synthetic", "--out", str(out), "--synthetic-seconds", "0.5"]
    assert prepare_main([*args, "--synthetic-files", "4"]) == 0
    stamp = (out / "train" / "SOURCE.txt").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        assert prepare_main([*args, "--synthetic-files", "4"]) == 0
    assert "already has 4 SYNTHETIC audio files" in caplog.text
    assert (out / "train" / "SOURCE.txt").stat().st_mtime_ns == stamp
    assert prepare_main([*args, "--synthetic-files", "8", "--force"]) == 0
    assert len(find_audio_files(out / "train")) == 8
    assert sorted(p.name for p in out.iterdir()) == ["train", "val"]
    other = tmp_path / "other"
    (other / "val").mkdir(parents=True)
    (other / "val" / "notes.txt").write_text("mine")
    assert prepare_main(["--synthetic", "--out", str(other)]) == 1  # not empty: not touched
    assert [p.name for p in other.iterdir()] == ["val"]


def test_prepare_falls_back_to_synthetic_when_offline(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "data"
    small = ["--synthetic-files", "4", "--synthetic-seconds", "0.5"]
    with caplog.at_level(logging.WARNING):
        assert prepare_main(["--hf", "--out", str(out), *small]) == 0
    assert "SYNTHETIC DATA" in caplog.text
    for split in ("train", "val"):
        assert (out / split / "SYNTHETIC").exists() and find_audio_files(out / split)
    strict = ["--hf", "--out", str(tmp_path / "d2"), "--no-fallback", *small]
    assert prepare_main(strict) == 1
    assert not (tmp_path / "d2" / "train").exists()


def test_prepare_failure_leaves_no_data_folder(tmp_path):
    src = tmp_path / "junk"
    src.mkdir()
    for i in range(3):
        (src / f"s{i}_x.wav").write_text("not audio")
    out = tmp_path / "data"
    assert prepare_main(["--source", str(src), "--out", str(out)]) == 1
    assert list(out.iterdir()) == []  # no train/, val/ or .prepare-* left


@pytest.mark.parametrize(
    "argv",
    [["--source", "/no/such/dir"], ["--bogus"], ["--val-fraction", "1.5"], ["--max-files", "0"]],
)
def test_prepare_command_line_errors_are_one_line(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        prepare_main([*argv, "--out", str(tmp_path / "data")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err


def test_split_plans(tmp_path):
    def touch(*rels):
        for rel in rels:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes(b"")

    touch("c/train/a.wav", "c/train/b.wav", "c/dev/c.wav")
    plan = plan_split(tmp_path / "c")
    assert [f.name for f, _ in plan.val] == ["c.wav"] and len(plan.train) == 2
    touch(*(f"l/corpus/{s}/ch/{s}-{i}.flac" for s in "abcdefghij" for i in range(3)))
    plan = plan_split(tmp_path / "l", 0.1, seed=1)
    assert "sub-folder" in plan.how
    val_spk = {f.parent.parent.name for f, _ in plan.val}
    assert len(val_spk) == 1 and not val_spk & {f.parent.parent.name for f, _ in plan.train}
    touch(*(f"f/{i:03d}.wav" for i in range(20)))
    plan, again = plan_split(tmp_path / "f"), plan_split(tmp_path / "f")
    assert len(plan.val) == 2 and plan.val == again.val and "file split" in plan.how
