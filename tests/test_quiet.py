"""escx silences exactly the third-party messages it names, and nothing else."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

from escx.training.quiet import (
    LIGHTNING_RANK_ZERO_LOGGERS,
    PYTREE_LEAFSPEC_MESSAGE,
    drop_unset_wandb_anonymous,
    silence_known_noise,
)


def test_lightning_tips_are_dropped_and_other_info_is_kept(caplog):
    silence_known_noise()
    logger = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGERS[0])
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try litlogger")
        logger.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_only_lightnings_leafspec_deprecation_is_ignored():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        message = f"{PYTREE_LEAFSPEC_MESSAGE}, use ... instead."
        # The same text attributed to Lightning's pytree module is ignored ...
        warnings.warn_explicit(
            message, FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities._pytree"
        )
        # ... but not when another module triggers it.
        warnings.warn_explicit(message, FutureWarning, "mine.py", 1, module="mypkg.mine")
    assert [w.filename for w in caught] == ["mine.py"]


def test_unset_wandb_anonymous_is_removed_and_an_explicit_choice_kept():
    unset = SimpleNamespace(_wandb_init={"project": "escx", "anonymous": None})
    chosen = SimpleNamespace(_wandb_init={"project": "escx", "anonymous": "allow"})
    other = SimpleNamespace()  # a CSV logger has no wandb.init arguments
    drop_unset_wandb_anonymous([unset, chosen, other])
    assert unset._wandb_init == {"project": "escx"}
    assert chosen._wandb_init["anonymous"] == "allow"


def test_sync_dist_advice_is_ignored_only_for_escx_reduced_metrics():
    advice = (
        "It is recommended to use `self.log({!r}, ..., sync_dist=True)` when logging on epoch"
        " level in distributed setting to accumulate the metric across devices."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise()
        for name in ("val/pesq@9kbps", "test/sisdr@1.5kbps", "my_metric", "train/loss"):
            warnings.warn(advice.format(name), UserWarning, stacklevel=1)
    assert [str(w.message).split("'")[1] for w in caught] == ["my_metric", "train/loss"]
