"""Bounds on the memory and processes a config may ask a run for, checked before allocating.

Training memory grows with the audio in a batch: every layer's activations are kept for the
backward pass, and a tiny ESC was killed by the kernel, with no message, at 21 GB on 8 crops of
100 s. The bounds below are far above ESC's recipe (9 crops of 3 s per device) and refuse only
what no speech codec trains on; they do not estimate a model's memory, so a large model can
still exceed a small machine within them.

* :data:`MAX_SEGMENT_SECONDS`: one training crop is at most 30 s (10x ESC's clip);
* :data:`MAX_EVAL_SEGMENT_SECONDS`: one validation/test segment is at most 10 min;
* :data:`MAX_BATCH_SECONDS`: one training or evaluation batch holds at most 10 min of audio per
  device (batch size x segment length);
* :data:`MAX_WORKERS_PER_CORE`: at most 4 DataLoader worker processes per usable CPU core.
"""

from __future__ import annotations

import os

MAX_SEGMENT_SECONDS = 30.0
MAX_EVAL_SEGMENT_SECONDS = 600.0
MAX_BATCH_SECONDS = 600.0
MAX_WORKERS_PER_CORE = 4


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_data_sizes(
    rate: int, segment: int, val_segment: int | None, batch: int, val_batch: int | None
) -> None:
    """Refuse crop, segment and batch sizes beyond the bounds above.

    Args:
        rate: sample rate the audio is read at (Hz).
        segment: training crop length (samples).
        val_segment: validation/test segment length (samples), None for whole files.
        batch: training batch size per device.
        val_batch: evaluation batch size per device (None: ``batch``).

    Raises:
        ValueError: one line naming the option, its length in seconds and the bound.
    """

    def seconds(samples: int) -> str:
        return f"{samples / rate:g} s"

    if segment > MAX_SEGMENT_SECONDS * rate:
        raise ValueError(
            f"data.segment_samples {segment} is {seconds(segment)} of audio per training crop; "
            f"escx trains on crops of up to {MAX_SEGMENT_SECONDS:g} s "
            f"({int(MAX_SEGMENT_SECONDS * rate)} samples at {rate} Hz; ESC uses 3 s)"
        )
    if batch * segment > MAX_BATCH_SECONDS * rate:
        raise ValueError(
            f"data.batch_size {batch} x segment_samples {segment} is {seconds(batch * segment)} "
            f"of audio per training batch; the limit is {MAX_BATCH_SECONDS:g} s per device"
        )
    if val_segment is None:
        return
    if val_segment > MAX_EVAL_SEGMENT_SECONDS * rate:
        raise ValueError(
            f"data.val_segment_samples {val_segment} is {seconds(val_segment)} per segment; the "
            f"limit is {MAX_EVAL_SEGMENT_SECONDS:g} s (null evaluates whole files)"
        )
    total = (val_batch or batch) * val_segment
    if total > MAX_BATCH_SECONDS * rate:
        raise ValueError(
            f"data.val_batch_size x val_segment_samples is {seconds(total)} of audio per "
            f"evaluation batch; the limit is {MAX_BATCH_SECONDS:g} s per device"
        )


def check_workers(workers: int) -> None:
    """Refuse more DataLoader worker processes than :data:`MAX_WORKERS_PER_CORE` per core."""
    cores = usable_cores()
    if workers > MAX_WORKERS_PER_CORE * cores:
        raise ValueError(
            f"data.num_workers {workers}: this machine lets escx use {cores} CPU cores; give at "
            f"most {MAX_WORKERS_PER_CORE * cores} worker processes"
        )
