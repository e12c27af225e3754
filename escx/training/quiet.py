"""Keep third-party noise out of ``escx fit|validate|test`` output, one named message at a time.

Every run used to print the same messages that ask nothing of the user and hide the lines that
matter. Each is handled at its source where escx can, and otherwise silenced by its exact text
and origin, so that any other warning from the same library still shows:

* Lightning logs a "💡 Tip" advertising its ``litlogger`` / ``litmodels`` packages whenever a run
  uses another logger or checkpoint callback. There is no switch for it, so a logging filter on
  Lightning's rank-zero logger drops exactly those records.
* Lightning's ``WandbLogger`` always passes ``anonymous=None`` to ``wandb.init``; recent W&B
  versions (0.31 here) warn about *any* value of that retired setting, ``None`` included. The key
  is removed from the logger's init arguments before the run starts, which is what W&B asks for.
* Lightning's own ``lightning.pytorch.utilities._pytree`` builds ``torch.utils._pytree.LeafSpec``
  objects, which recent torch (2.13 here) deprecates with a FutureWarning on every loop. Nothing in
  escx can change that call, so that one message from that one module is ignored.
* Under DDP, Lightning recommends ``sync_dist=True`` for every epoch-level value logged without
  it. escx's ``val/`` and ``test/`` values come from torchmetrics, whose ``compute()`` has already
  reduced them across ranks (every rank logs the same number), so that advice is ignored for
  exactly those names; any other value logged without ``sync_dist`` still gets it.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable
from typing import Any

# Start of Lightning's product tips (logger connector and callback connector).
LIGHTNING_TIP_PREFIX = "💡 Tip: For seamless cloud"
# Lightning's rank-zero messages are logged through these loggers (pytorch and fabric halves).
LIGHTNING_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
PYTREE_LEAFSPEC_MESSAGE = "`isinstance(treespec, LeafSpec)` is deprecated"
PYTREE_LEAFSPEC_MODULE = r"lightning\.pytorch\.utilities\._pytree"
# Lightning's advice for an epoch-level value logged without sync_dist, for escx's reduced metrics.
REDUCED_METRIC_SYNC_ADVICE = r"It is recommended to use `self\.log\('(val|test)/"


class DropLightningTips(logging.Filter):
    """Rejects exactly the log records that carry Lightning's product tips."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(LIGHTNING_TIP_PREFIX)


def silence_known_noise() -> None:
    """Install the tip filter and the two warning filters above (idempotent)."""
    for name in LIGHTNING_RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLightningTips) for f in logger.filters):
            logger.addFilter(DropLightningTips())
    warnings.filterwarnings(
        "ignore",
        message=re.escape(PYTREE_LEAFSPEC_MESSAGE),
        category=FutureWarning,
        module=PYTREE_LEAFSPEC_MODULE,
    )
    warnings.filterwarnings("ignore", message=REDUCED_METRIC_SYNC_ADVICE)


def drop_unset_wandb_anonymous(loggers: Iterable[Any]) -> None:
    """Remove ``anonymous=None`` from every W&B logger's ``wandb.init`` arguments.

    Must run before a logger's experiment starts (Lightning starts it lazily, on first use). A
    value the user set on purpose (``anonymous: true``) is kept, and W&B may then warn about it.
    """
    for logger in loggers:
        init = getattr(logger, "_wandb_init", None)
        if isinstance(init, dict) and "anonymous" in init and init["anonymous"] is None:
            del init["anonymous"]
