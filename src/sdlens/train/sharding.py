"""Sharded training (FSDP2, DeepSpeed ZeRO-3): what accelerate leaves out on a machine without GPUs, and the EMA
teacher's checkpoint when its weights are sharded (issue 18, docs/train.md "Many GPUs, many nodes").

- :func:`enable_fsdp_on_cpu`: ``accelerate launch`` with an FSDP config sets ``ACCELERATE_USE_FSDP``, but
  accelerate 1.x adopts its FSDP plugin only on accelerator devices: on a CPU-only machine the run silently becomes
  plain DDP over gloo. sdlens turns the plugin on there, so ``configs/accelerate/fsdp_cpu.yaml`` really runs
  FSDP2 (``torch.distributed.fsdp.fully_shard``) over gloo: the same wrapping, the same collectives and the same
  sharded checkpoints as on GPUs.
- :func:`save_teacher_state` / :func:`load_teacher_state`: the EMA teacher's full state dict, gathered from the
  shards on save (every rank takes part, rank 0 writes) and scattered back into the shards on resume.

torch / accelerate are imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sdlens.runfolder import atomic_path

__all__ = [
    "enable_fsdp_on_cpu",
    "fsdp_launch",
    "load_teacher_state",
    "save_teacher_state",
]


def fsdp_launch() -> bool:
    """Launched by ``accelerate launch`` with an FSDP config (``distributed_type: FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def enable_fsdp_on_cpu(mixed_precision: str = "no") -> bool:
    """Make an FSDP launch on a machine without an accelerator run FSDP (returns whether it did anything).

    accelerate 1.x builds its ``FullyShardedDataParallelPlugin`` from the launcher's environment but attaches it
    only when the distributed type is an accelerator's (``MULTI_GPU``, ...). With ``use_cpu`` (sdlens sets it when
    torch sees no CUDA device) the type is ``MULTI_CPU`` and the plugin is dropped. Here the shared
    ``AcceleratorState`` is created first, with the plugin attached, and the shared distributed type (which every
    later ``AcceleratorState()`` copies from ``PartialState``) is set to ``FSDP``; the trainer's ``Accelerator``
    then finds the state initialised and prepares models with ``fully_shard``. The process group stays the gloo
    one ``PartialState`` started. Call it after the TRL arguments exist (they start the process group) and before
    the trainer.
    """
    import torch

    if not fsdp_launch() or torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1") or 1) < 2:
        return False
    from accelerate.state import AcceleratorState, DistributedType, PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin, TorchDynamoPlugin

    plugin = FullyShardedDataParallelPlugin()  # from the launcher's environment, as Accelerator() builds it
    # the same construction as Accelerator.__init__'s (dynamo from the environment, no other plugin)
    state = AcceleratorState(
        mixed_precision=mixed_precision,
        cpu=True,
        dynamo_plugin=TorchDynamoPlugin(),
        fsdp_plugin=plugin,
        _from_accelerator=True,
    )
    if state.distributed_type != DistributedType.MULTI_CPU:  # already FSDP, or not the CPU case after all
        return False
    if mixed_precision != "no":
        plugin.set_mixed_precision(mixed_precision)
    PartialState().distributed_type = DistributedType.FSDP  # the shared value each AcceleratorState() re-reads
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    return True


def _full_state_dict(model, kind: str) -> dict[str, Any]:
    """The model's full state dict on CPU (collective: every rank must call it; complete on every rank)."""
    if kind == "fsdp2":
        from torch.distributed.tensor import DTensor

        out = {}
        for name, value in model.state_dict().items():
            full = value.full_tensor() if isinstance(value, DTensor) else value
            out[name] = full.detach().to("cpu").clone()
        return out
    if kind == "zero3":
        import deepspeed

        params = list(model.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    raise ValueError(f"no gathered state dict for sharding {kind!r}")


def save_teacher_state(model, kind: str | None, path: str | Path, *, is_main: bool) -> None:
    """Write the teacher's full weights to ``path`` (safetensors, temp file + rename). With sharded weights every
    rank must call it (the shards are gathered); only the main process writes."""
    from safetensors.torch import save_file, save_model

    if kind is None:
        if is_main:
            with atomic_path(path) as tmp:
                save_model(model, str(tmp))
        return
    state = _full_state_dict(model, kind)
    if is_main:
        with atomic_path(path) as tmp:
            # tied weights are one tensor in memory: safetensors refuses shared storage, the clone above split them
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))


def load_teacher_state(model, kind: str | None, path: str | Path, device: Any) -> None:
    """Load the teacher's full weights from ``path`` into ``model``, into each rank's shards when sharded.

    Raises ``RuntimeError`` if the file does not hold exactly the model's tensors with their shapes.
    """
    import torch
    from safetensors.torch import load_file, load_model

    if kind is None:
        load_model(model, str(path), device=str(device))
        return
    full = load_file(str(path))
    if kind == "fsdp2":
        from torch.distributed.tensor import DTensor, distribute_tensor

        current = model.state_dict()
        missing = sorted(set(current) - set(full))
        if missing:
            raise RuntimeError(f"{path} lacks {len(missing)} teacher tensors (first: {missing[0]})")
        with torch.no_grad():
            for name, target in current.items():
                src = full[name]
                if tuple(src.shape) != tuple(target.shape):
                    shapes = f"{tuple(src.shape)}, the teacher's {tuple(target.shape)}"
                    raise RuntimeError(f"{path}: {name} has shape {shapes}")
                if isinstance(target, DTensor):
                    shard = distribute_tensor(
                        src.to(target.dtype), target.device_mesh, target.placements, src_data_rank=None
                    )  # every rank read the same file: each keeps its own slice, no communication
                    target.to_local().copy_(shard.to_local())
                else:
                    target.copy_(src.to(target.dtype))
        return
    if kind == "zero3":
        import deepspeed

        params = list(model.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0), torch.no_grad():
            missing, _ = model.load_state_dict(full, strict=False)
            if missing:
                raise RuntimeError(f"{path} lacks {len(missing)} teacher tensors (first: {missing[0]})")
        return
    raise ValueError(f"cannot load a teacher under sharding {kind!r}")
