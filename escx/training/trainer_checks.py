"""Trainer options checked on the parsed config, before any process, folder or model is made.

Lightning accepts ``--trainer.devices 64`` on a 2-core CPU (and starts 63 processes that then
hang), and reports other mistakes as tracebacks from deep inside ``Trainer``. escx checks:

* ``trainer.devices`` on the CPU: a process count from 1 to the cores this process may use
  (``os.sched_getaffinity``): more processes than cores only compete for them, each with its
  own copy of the model. ``-1`` ("every device" to Lightning) has no meaning for CPU processes
  and is refused (Lightning refuses it too, with a traceback);
* ``trainer.devices`` on GPUs: ``-1`` (all), a count up to the GPUs present, or their indices;
  ``trainer.accelerator gpu`` (or ``cuda``) on a machine without one is refused;
* ``trainer.max_steps``: ``-1`` (no limit) or a non-negative count; ``trainer.num_nodes`` >= 1;
* ``weights_only``: escx reads checkpoints with ``weights_only=True`` only (nothing it reads
  may run code), so ``--weights_only false`` is refused rather than ignored.

:func:`allow_unused_parameters` adjusts the checked options for data-parallel training.
"""

from __future__ import annotations

from typing import Any

from escx.commands.common import CommandError
from escx.security.resources import usable_cores

GPU_NAMES = ("gpu", "cuda")


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_trainer_options(config: Any) -> None:
    """Refuse trainer options that would hang, oversubscribe or crash with a traceback.

    Args:
        config: the subcommand's section of LightningCLI's parsed config.

    Raises:
        CommandError: one line naming the option, the value and what is accepted.
    """
    if config.get("weights_only") is False:
        raise CommandError(
            "--weights_only false is not supported: escx reads checkpoints with weights_only=True "
            "only, since unpickling anything else could run code"
        )
    trainer = config.get("trainer") or {}
    _check_steps(trainer.get("max_steps"))
    nodes = trainer.get("num_nodes", 1)
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise CommandError(f"--trainer.num_nodes {nodes}: give a node count of 1 or more")
    accelerator = str(trainer.get("accelerator") or "auto").lower()
    devices = trainer.get("devices", "auto")
    gpus = _gpus()
    if accelerator in GPU_NAMES and gpus == 0:
        raise CommandError(
            f"--trainer.accelerator {accelerator}: this machine has no GPU that torch can use; "
            "train on the CPU with --trainer.accelerator cpu"
        )
    if accelerator == "cpu" or (accelerator == "auto" and gpus == 0):
        _check_cpu_devices(devices)
    elif accelerator in GPU_NAMES or accelerator == "auto":
        _check_gpu_devices(devices, gpus)


def _check_steps(steps: Any) -> None:
    if steps is None:
        return
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < -1:
        raise CommandError(
            f"--trainer.max_steps {steps}: give a step count (0 or more), or -1 for no limit"
        )


def _as_int(devices: Any) -> int | None:
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        return int(devices)
    return None


def _check_cpu_devices(devices: Any) -> None:
    if devices == "auto":
        return
    cores = usable_cores()
    count = _as_int(devices)
    if count is None or count == 0 or count < -1:
        raise CommandError(
            f"--trainer.devices {devices}: on the CPU give a process count from 1 to {cores} "
            "(the cores this machine lets escx use)"
        )
    if count == -1:
        raise CommandError(
            f"--trainer.devices -1 means every GPU, and there is none here; on the CPU give a "
            f"process count from 1 to {cores}"
        )
    if count > cores:
        raise CommandError(
            f"--trainer.devices {count}: this machine lets escx use {cores} CPU cores, and each "
            f"training process needs one; give a count from 1 to {cores}"
        )


def _check_gpu_devices(devices: Any, gpus: int) -> None:
    if devices in ("auto", -1, "-1"):
        return
    if isinstance(devices, (list, tuple)):
        wrong = [d for d in devices if _as_int(d) is None or not 0 <= _as_int(d) < gpus]
        if wrong or not devices:
            raise CommandError(
                f"--trainer.devices {devices}: GPU indices must be in 0..{gpus - 1} on this machine"
            )
        return
    count = _as_int(devices)
    if count is None and isinstance(devices, str) and "," in devices:  # "0,1": indices
        _check_gpu_devices([d for d in devices.split(",") if d.strip()], gpus)
    elif count is None or count < 1 or count > gpus:
        raise CommandError(
            f"--trainer.devices {devices}: give a GPU count from 1 to {gpus}, -1 for all of "
            "them, or their indices"
        )


def _device_count(devices: Any, accelerator: Any) -> int:
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if str(devices) in ("auto", "-1"):
        import torch

        gpu = str(accelerator) in ("auto", "gpu", "cuda")
        return torch.cuda.device_count() if gpu and torch.cuda.is_available() else 1
    try:
        return int(devices)
    except (TypeError, ValueError):
        return 1


def allow_unused_parameters(config: Any) -> None:
    """Use DDP with unused-parameter detection when training on several devices.

    Codebooks get no gradient during pre-training (the quantizer is bypassed) and for streams
    dropped by quantizer dropout, which plain DDP rejects. ``ddp`` (or ``auto`` on several
    devices, or on several nodes of one device each) therefore becomes
    ``ddp_find_unused_parameters_true``, ``ddp_spawn`` likewise.
    """
    trainer = config.get("trainer", {})
    strategy = trainer.get("strategy")
    if not isinstance(strategy, str):
        return
    nodes = trainer.get("num_nodes") or 1
    devices = _device_count(trainer.get("devices"), trainer.get("accelerator"))
    if strategy == "auto" and devices * nodes > 1:
        strategy = "ddp"
    if strategy in ("ddp", "ddp_spawn"):
        trainer["strategy"] = f"{strategy}_find_unused_parameters_true"
