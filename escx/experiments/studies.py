"""The ablation studies' definitions: each study's variants (configs and overrides per arm),
its default budget per scale and recipe, its bitrates and the note its report carries.
:mod:`escx.experiments.ablation` trains and reports them."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

# Share of a study's steps trained with the quantizer bypassed, as the reference's ablation
# (5 of 50 epochs); the same for every variant that pre-trains.
PRETRAIN_SHARE = Fraction(1, 10)
# The recipe study pre-trains a quarter, as the runs of docs/recipes.md did (and make demo does).
RECIPE_PRETRAIN_SHARE = Fraction(1, 4)

# Validations per run in the recipe study, evenly spaced: the points of its quality-against-step
# curves.
CURVE_POINTS = 5
LOGGERS = "experiments/logging/wandb-and-csv.yaml"  # adds the CSV the curves are read from


@dataclass
class Variant:
    """One arm of a study: a name, extra configs, command-line overrides and, where the study
    compares recipes, its recipe (None: the driver's ``--recipe``).

    ``models`` is for an arm of another codec family (the baseline study's DAC): per scale, the
    configs that replace ESC's model, scale and recipe configs (its recipe is in them; ``recipe``
    then only names it in captions).
    """

    name: str
    configs: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    recipe: str | None = None
    models: dict[str, list[str]] | None = None


def pretrain_steps(steps: int, share: Fraction = PRETRAIN_SHARE) -> int:
    """Pre-training steps of a run trained for ``steps``: ``share`` of them, at least one."""
    return max(1, int(steps * share))


def pretrain_study(steps: int) -> list[Variant]:
    """ESC with and without pre-training; the reference's ablation pre-trains 5 of 50 epochs."""
    pretrain = pretrain_steps(steps)
    return [
        Variant("with-pretraining", overrides=[f"--model.pretrain_steps={pretrain}"]),
        Variant("without-pretraining", overrides=["--model.pretrain_steps=0"]),
    ]


def quantizer_study(steps: int) -> list[Variant]:
    """CS-RVQ or RVQ by Swin or conv (docs/esc.md §9.1-§9.2)."""
    pretrain = pretrain_steps(steps)
    return [
        Variant(
            name, [f"experiments/ablations/{name}.yaml"], [f"--model.pretrain_steps={pretrain}"]
        )
        for name in ("csrvq-swin", "rvq-swin", "csrvq-conv", "rvq-conv")
    ]


def codebook_study(steps: int) -> list[Variant]:
    """Answers to codebook collapse on the same model (ESC-Base, CS-RVQ), one technique each.

    ``pretraining`` is ESC's recipe (docs/esc.md §13.4): the quantizer is bypassed for the first
    tenth of the steps, then Kaiming-initialised codebooks learn through the codebook loss. The
    other variants quantize from the first step, as SoundStream and EnCodec do, and change one
    thing: k-means initialisation, dead-entry restarts or EMA codeword updates (overlays in
    experiments/ablations/codebook-*.yaml, usable on any quantizer).
    """
    pretrain = pretrain_steps(steps)
    quantized = "--model.pretrain_steps=0"
    return [
        Variant("pretraining", overrides=[f"--model.pretrain_steps={pretrain}"]),
        *(
            Variant(name, [f"experiments/ablations/codebook-{overlay}.yaml"], [quantized])
            for name, overlay in (
                ("kmeans-init", "kmeans"),
                ("dead-restarts", "restarts"),
                ("ema-updates", "ema"),
            )
        ),
    ]


def codebook_kind_study(steps: int) -> list[Variant]:
    """ESC's VQ against the other codebook kinds, in every codebook slot of ESC's CS-RVQ.

    Every variant follows ESC's recipe (the quantizer bypassed for the first tenth of the steps)
    and changes only what fills the codebook slots (overlays experiments/ablations/codebook-*.yaml):
    FSQ, LFQ on the sphere (BSQ), SimVQ, or ESC's VQ with the rotation trick. All keep 10 bits
    per code. ``--config experiments/ablations/rvq-swin.yaml`` runs the same comparison on the
    residual VQ.
    """
    pretrain = [f"--model.pretrain_steps={pretrain_steps(steps)}"]
    return [
        Variant("vq", overrides=pretrain),
        *(
            Variant(name, [f"experiments/ablations/codebook-{name}.yaml"], pretrain)
            for name in ("fsq", "lfq", "simvq", "rotation")
        ),
    ]


def recipe_study(steps: int) -> list[Variant]:
    """ESC's recipe against the quick recipe: same model, steps, seed, data and pre-training
    share; each run validates at 1.5 and 9 kbps :data:`CURVE_POINTS` times and logs a CSV, from
    which the report draws quality against step."""
    overrides = [
        f"--model.pretrain_steps={pretrain_steps(steps, RECIPE_PRETRAIN_SHARE)}",
        f"--trainer.val_check_interval={max(1, steps // CURVE_POINTS)}",
        "--trainer.check_val_every_n_epoch=null",  # the interval counts steps, across epochs
        "--model.val_kbps=[1.5,9.0]",
    ]
    return [Variant(recipe, [LOGGERS], overrides, recipe=recipe) for recipe in ("esc", "quick")]


def baseline_study(steps: int) -> list[Variant]:
    """ESC against DAC (the paper's comparison, :mod:`escx.experiments.baseline`): the same data,
    steps and seed. ESC pre-trains the first quarter, as the quick recipe's runs did; DAC trains
    quantized from the first batch with its own recipe."""
    from escx.experiments.baseline import DAC_MODELS

    pretrain = pretrain_steps(steps, RECIPE_PRETRAIN_SHARE)
    return [
        Variant("esc", overrides=[f"--model.pretrain_steps={pretrain}"]),
        Variant("dac", recipe="dac", models=DAC_MODELS),
    ]


def causal_study(steps: int) -> list[Variant]:
    """The causal ESC (experiments/ablations/causal.yaml: no look-ahead beyond a 20 ms frame,
    escx.streaming) against the offline ESC: same model size, steps, seed, data and pre-training
    share, so the difference is what causality costs."""
    pretrain = [f"--model.pretrain_steps={pretrain_steps(steps)}"]
    return [
        Variant("offline", overrides=pretrain),
        Variant("causal", ["experiments/ablations/causal.yaml"], pretrain),
    ]


STUDIES = {
    "pretrain": pretrain_study,
    "quantizer": quantizer_study,
    "codebook": codebook_study,
    "codebook-kind": codebook_kind_study,
    "recipe": recipe_study,
    "baseline": baseline_study,
    "causal": causal_study,
}

# Bitrates a study evaluates when its variants' stream counts differ (the baseline study's DAC
# has 0.5 kbps per stream, ESC 1.5); the others evaluate every stream count.
STUDY_KBPS = {"baseline": (1.5, 3.0, 4.5, 6.0, 7.5, 9.0)}

# Training steps per variant at SCALE=tiny when --steps is not given, by recipe.
#
# ESC's recipe (batch 8 x 1 s): the codebook study's 500 is sized for about 30 minutes on an idle
# 2-core CPU (measured with --steps 40): a tiny-model step takes 0.6-0.7 s, the same for every
# codebook technique, and each variant adds about 80 s of start-up, final validation and
# evaluation of 16 files: 4 x (80 + 500 x 0.65) s.
#
# The quick recipe (batch 4 x 0.5 s, a quarter of the audio per step): 1000 steps, twice the
# audio of ESC's recipe's 500 at a similar time. Measured with two studies side by side, one
# thread each: 0.31 s a step, about 5 minutes of training a variant plus its evaluation. Not
# enough to leave the random-phase floor with 10% pre-training (docs/ablations.md: SI-SDR still
# about -40 dB, seed-to-seed spread as large as the variants' differences). The demo's single
# run left that floor only after a few thousand steps, so ranking needs --steps 5000 or more
# (how many is not measured).
#
# The recipe study trains both recipes for 4000 steps: at 1500 the quick recipe led ESC's by
# only 0.04 PESQ at 9 kbps, at 4000 (with --devices 2) by 0.35 (docs/recipes.md). On an idle
# 2-core CPU with --devices 2 the whole study took 96 minutes, ESC's recipe 66 of them.
TINY_STEPS = {
    "esc": {"pretrain": 300, "quantizer": 300, "codebook": 500, "codebook-kind": 500},
    "quick": {"pretrain": 1000, "quantizer": 1000, "codebook": 1000, "codebook-kind": 1000},
}
TINY_STEPS["esc"]["causal"], TINY_STEPS["quick"]["causal"] = 300, 1000  # as the pretrain study
# The baseline study (ESC against DAC) at SCALE=tiny, whatever ESC's recipe: see
# docs/ablations.md for what it took and showed.
BASELINE_STEPS = 3000
RECIPE_STUDY_STEPS = 4000


# One sentence per study appended to the report caption.
NOTES = {
    "codebook": "'pretraining' bypasses the quantizer for the first 10% of steps (ESC); the "
    "other variants quantize from the first step with one codebook technique each. k-means "
    "clusters the vectors of the first 8 quantized batches (3,200 per codebook at SCALE=tiny, "
    "for 1024 entries), which the Kaiming entries quantize.",
    "codebook-kind": "Every variant bypasses the quantizer for the first 10% of steps (ESC) and "
    "differs only in the codebook kind: ESC's VQ, FSQ [4,4,4,4,4], LFQ on the sphere (10 bits, "
    "entropy penalty 0.1), SimVQ, or VQ with the rotation trick; all 1024 codes (10 bits) per "
    "codebook.",
    "causal": "Both variants train the same architecture and parameter count for the same steps, "
    "seed and data, pre-training the first 10%; 'causal' sees no sample after its 20 ms frame "
    "(causal STFT framing and inverse, causal Swin windows, past-only de-embedding: 20 ms "
    "algorithmic latency), 'offline' is ESC (about 0.7 s of look-ahead when streamed).",
    "recipe": "Both variants train the same model for the same steps, seed and data, pre-training "
    "the first 25% of the steps; 'esc' is ESC's recipe, 'quick' stacks the quick recipe's "
    "overlay. Each validated at 1.5 and 9 kbps every fifth of its steps: quality against step "
    "in quality_vs_step.png (points in curves.csv).",
}


def default_steps(study: str, scale: str, recipe: str) -> int:
    """Steps per variant when none are given: the tiny budget of ``recipe`` (the recipe study
    trains both recipes for the same steps), or ESC's 250k at full size."""
    if scale != "tiny":
        return 250_000
    if study == "baseline":
        return BASELINE_STEPS
    return RECIPE_STUDY_STEPS if study == "recipe" else TINY_STEPS[recipe][study]
