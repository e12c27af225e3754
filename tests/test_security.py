"""The rules behind the hostile-input refusals, in process: which class paths escx lets a config
or checkpoint name, how large a config or checkpoint tree may be, which trainer and data sizes a
run may ask for, and which checkpoints ``--ckpt_path`` accepts. End to end through the ``escx``
command: tests/test_hostile_training.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hostile_helpers import ALIAS_BOMB, EVIL_MODULE, save, shared_list_bomb, training_checkpoint
from tools_fixtures import make_checkpoint
from training_helpers import ESC, TINY, build_module

import escx.training.trainer_checks as trainer_checks
from escx.commands.common import CommandError
from escx.config import ConfigError, check_class_names, registries
from escx.data.datamodule import AudioDataModule
from escx.security import (
    MAX_CONFIG_BYTES,
    TRUST_ENV,
    SizeLimitError,
    UntrustedClassPath,
    check_tree_size,
    import_policy,
    load_yaml_text,
    read_yaml_file,
    trusted_prefixes,
)
from escx.training.checkpoint_checks import (
    check_fits_model,
    check_same_run,
    read_training_checkpoint,
)


@pytest.fixture
def evil_on_path(tmp_path, monkeypatch) -> Path:
    """A folder holding evil_mod.py, first on sys.path (as `python -m` puts the current one)."""
    (tmp_path / "evil_mod.py").write_text(EVIL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    assert "evil_mod" not in sys.modules and not (tmp_path / "MARKER").exists()


# ---------------------------------------------------------------- class paths


def test_a_component_is_its_registered_class_not_any_class_of_that_name(evil_on_path):
    codecs = registries()["codec"]
    assert "evil_mod.STFTCodec" not in codecs and "STFTCodec" in codecs
    stft = codecs.get("STFTCodec")
    assert codecs.get("escx.STFTCodec") is stft  # a re-export escx has loaded
    assert codecs.get(f"{stft.__module__}.STFTCodec") is stft


CLASS_TREES = {
    "component": {"codec": {"class_path": "evil_mod.STFTCodec"}},
    "component shorthand": {"model": {"codec": {"init_args": {"quantizer": "this.CrossScaleRVQ"}}}},
    "scheduler": {"model": {"scheduler": {"class_path": "evil_mod.Foo"}}},
    "callback string": {"trainer": {"callbacks": ["evil_mod.Foo"]}},
    "nested class_path": {"model": {"loss_args": {"mel": {"x": {"class_path": "evil_mod.Foo"}}}}},
    "look-alike package": {"model": {"optimizer": {"class_path": "escx_evil.AdamW"}}},
}  # fmt: skip


@pytest.mark.parametrize("case", list(CLASS_TREES))
def test_untrusted_class_paths_are_refused_without_importing(evil_on_path, case):
    with pytest.raises(ConfigError, match="is outside the packages escx imports classes from"):
        check_class_names(CLASS_TREES[case], "x.yaml")


def test_trusted_class_paths_pass_and_components_get_their_own_module_path(monkeypatch):
    tree = {
        "model": {
            "optimizer": {"class_path": "torch.optim.AdamW"},
            "scheduler": "escx.training.lr_schedule.WarmupCosineLR",
            "codec": {"class_path": "escx.STFTCodec", "init_args": {"encoder": "SwinEncoder"}},
        },
        "trainer": {"logger": {"class_path": "lightning.pytorch.loggers.CSVLogger"}},
    }
    checked = check_class_names(tree)
    assert checked["model"]["codec"]["class_path"] == "escx.codecs.stft_codec.STFTCodec"
    assert tree["model"]["codec"]["class_path"] == "escx.STFTCodec"  # the input is not changed
    monkeypatch.setenv(TRUST_ENV, "my_callbacks")
    check_class_names({"trainer": {"callbacks": ["my_callbacks.Probe"]}})
    monkeypatch.setenv(TRUST_ENV, "not-a-module")
    with pytest.raises(UntrustedClassPath, match="not a module name"):
        trusted_prefixes()


def test_jsonargparse_itself_imports_only_trusted_packages_and_is_restored(evil_on_path):
    from jsonargparse import ArgumentParser
    from jsonargparse._common import parsing_settings

    before = dict(parsing_settings["import_path_verdicts"])
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--fn", type=Callable)
    with import_policy(), pytest.raises(Exception, match="evil_mod.make"):
        parser.parse_args(["--fn", "evil_mod.make"])  # a key escx does not pre-check
    assert parsing_settings["import_path_verdicts"] == before


# ---------------------------------------------------------------- sizes


def test_config_trees_are_bounded_before_they_are_built(tmp_path):
    assert load_yaml_text(ESC.read_text(), "esc.yaml")["model"]["codec"]
    cases = {
        ALIAS_BOMB: "more than 100,000 values",
        "a: &a [1, *a]": "contains itself",
        "a: " + "[" * 70 + "]" * 70: "nests deeper than 64",
        "a: [" + ", ".join(["1"] * 1001) + "]": "a list of 1,001 items",
    }
    for text, words in cases.items():
        with pytest.raises(SizeLimitError, match=words):
            load_yaml_text(text, "t.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(SizeLimitError, match="escx reads configs of up to"):
        read_yaml_file(big)


def test_checkpoint_trees_are_bounded():
    loop: list = []
    loop.append(loop)
    for tree, words in [(shared_list_bomb(), "more than 100,000"), (loop, "contains itself")]:
        with pytest.raises(SizeLimitError, match=words):
            check_tree_size({"hyper_parameters": tree}, "c.ckpt")
    check_tree_size({"a": [1.5, 9.0], "b": {"c": None}}, "c.ckpt")


TRAINER = {
    "devices 3 on 2 cores": ({"accelerator": "cpu", "devices": 3}, "give a count from 1 to 2"),
    "devices abc": ({"devices": "abc"}, "process count from 1 to 2"),
    "devices 0": ({"devices": 0}, "process count from 1 to 2"),
    "devices -1 on the CPU": ({"accelerator": "cpu", "devices": -1}, "means every GPU"),
    "gpu without one": ({"accelerator": "gpu"}, "no GPU that torch can use"),
    "max_steps -5": ({"max_steps": -5}, "-1 for no limit"),
    "num_nodes 0": ({"num_nodes": 0}, "node count of 1 or more"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TRAINER))
def test_trainer_options_are_bounded(monkeypatch, case):
    monkeypatch.setattr(trainer_checks, "usable_cores", lambda: 2)
    monkeypatch.setattr(trainer_checks, "_gpus", lambda: 0)
    options, words = TRAINER[case]
    with pytest.raises(CommandError, match=words):
        trainer_checks.check_trainer_options({"trainer": options})


def test_sensible_trainer_options_pass(monkeypatch):
    monkeypatch.setattr(trainer_checks, "usable_cores", lambda: 2)
    monkeypatch.setattr(trainer_checks, "_gpus", lambda: 0)
    for options in [{}, {"devices": "auto"}, {"accelerator": "cpu", "devices": 2},
                    {"max_steps": -1, "devices": "1"}]:  # fmt: skip
        trainer_checks.check_trainer_options({"trainer": options})
    with pytest.raises(CommandError, match="weights_only=True only"):
        trainer_checks.check_trainer_options({"weights_only": False, "trainer": {}})


@pytest.mark.parametrize(
    ("options", "words"),
    [({"segment_samples": 1_600_000}, "100 s of audio per training crop"),
     ({"segment_samples": 480_000, "batch_size": 64}, "of audio per training batch"),
     ({"val_segment_samples": 16000 * 3600}, "per segment"),
     ({"num_workers": 100_000}, "worker processes")],
)  # fmt: skip
def test_data_sizes_are_bounded(options, words):
    with pytest.raises(ValueError, match=words):
        AudioDataModule(**options)


# ---------------------------------------------------------------- --ckpt_path


@pytest.fixture(scope="module")
def module():
    return build_module(ESC, TINY)


def test_only_training_checkpoints_are_accepted(tmp_path, module):
    codec = make_checkpoint(tmp_path / "codec.ckpt")
    with pytest.raises(CommandError, match="codec checkpoint .escx convert.*escx eval"):
        read_training_checkpoint(codec, "test")
    blob = training_checkpoint(module, "a" * 32, 3)
    del blob["optimizer_states"]
    save(blob, tmp_path / "weights.ckpt")
    read_training_checkpoint(tmp_path / "weights.ckpt", "test")
    with pytest.raises(CommandError, match="weights only"):
        read_training_checkpoint(tmp_path / "weights.ckpt", "fit")
    blob["pytorch-lightning_version"] = "not a version"
    save(blob, tmp_path / "damaged.ckpt")
    with pytest.raises(CommandError, match="is damaged"):
        read_training_checkpoint(tmp_path / "damaged.ckpt", "test")


def test_a_folder_is_resumed_only_by_its_own_run(tmp_path, module):
    folder = tmp_path / "run" / "checkpoints"
    ours = save(training_checkpoint(module, "a" * 32, 10), folder / "last.ckpt")
    best = save(training_checkpoint(module, "a" * 32, 8), folder / "best-step=8.ckpt")
    copy = save(training_checkpoint(module, "a" * 32, 10), tmp_path / "copy.ckpt")
    theirs = save(training_checkpoint(module, "b" * 32, 6), tmp_path / "other.ckpt")
    for path in (ours, best, copy):
        check_same_run(path, read_training_checkpoint(path, "fit"), folder)
    with pytest.raises(CommandError, match="resume that run with --ckpt_path last"):
        check_same_run(theirs, read_training_checkpoint(theirs, "fit"), folder)
    check_same_run(theirs, read_training_checkpoint(theirs, "fit"), tmp_path / "new")


def test_a_checkpoint_must_fit_the_model_of_the_config(tmp_path, module):
    path = save(training_checkpoint(module, "a" * 32, 1), tmp_path / "run/checkpoints/last.ckpt")
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"model": {}}))
    blob = read_training_checkpoint(path, "fit")
    check_fits_model(path, blob, module)
    other = build_module(ESC, ESC.parent / "tiny.yaml")
    with pytest.raises(CommandError, match=r"does not fit .* --config .*run/config.yaml"):
        check_fits_model(path, blob, other)
