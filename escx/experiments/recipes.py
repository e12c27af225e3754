"""Training recipes of the drivers (``make demo``, ``escx ablation``): which overlay follows the
model's configs.

A recipe is the optimiser, learning rate and loss weights a run trains with, as a config overlay
stacked after the model (``experiments/esc.yaml`` and, at SCALE=tiny, ``experiments/tiny.yaml``).
``esc`` is ESC's own recipe, the defaults of ``CodecModule`` and ``esc.yaml``, so it adds nothing;
``quick`` is ``experiments/recipes/quick.yaml``, for small models trained for minutes on a CPU,
where ESC's recipe is too slow to leave noise. Drivers default to ``quick`` at SCALE=tiny and to
``esc`` at SCALE=base, and take ``--recipe`` (Makefile ``RECIPE=``) to choose.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

RECIPES: dict[str, list[str]] = {
    "esc": [],
    "quick": ["experiments/recipes/quick.yaml"],
}

# The recipe a driver uses at each model scale when none is given.
DEFAULT_RECIPES = {"tiny": "quick", "base": "esc"}

# The source checkout that holds experiments/ (an editable install's repository).
CHECKOUT = Path(__file__).resolve().parents[2]


def default_recipe(scale: str) -> str:
    """The recipe used at ``scale`` (``tiny`` or ``base``) unless one is chosen."""
    return DEFAULT_RECIPES[scale]


def recipe_configs(recipe: str) -> list[str]:
    """The overlays ``recipe`` stacks after the model's configs (none for ESC's recipe).

    Raises:
        KeyError: an unknown recipe name.
    """
    return list(RECIPES[recipe])


def config_path(config: str) -> str:
    """``config`` as given when it exists from here, else the same path in the source checkout.

    The drivers name configs relative to the repository (``experiments/esc.yaml``); this lets
    them run from any folder of an editable install, as the demo does from a scratch folder.
    """
    if Path(config).exists() or Path(config).is_absolute():
        return config
    shipped = CHECKOUT / config
    return str(shipped) if shipped.exists() else config


def describe_recipe(recipe: str, configs: Sequence[str]) -> str:
    """``quick recipe (experiments/esc.yaml + experiments/tiny.yaml + ...)`` for captions."""
    return f"{recipe} recipe ({' + '.join(repo_relative(c) for c in configs)})"


def repo_relative(config: str) -> str:
    """A config path as the repository names it when it lies in the source checkout (captions
    and results stay readable and the same from any working folder)."""
    path = Path(config)
    if path.is_absolute() and path.is_relative_to(CHECKOUT):
        return str(path.relative_to(CHECKOUT))
    return config
