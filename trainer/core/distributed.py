"""Where training runs: the device, this process's rank among the processes, seeding and RNG state.

One process per device. Under `torchrun` (or `accelerate launch`) the environment carries RANK,
LOCAL_RANK and WORLD_SIZE; a plain `python` run is a world of one.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from brain.engine.model_loading import pick_device


@dataclass(frozen=True)
class Placement:
    """This process's device and its rank among the training processes."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    # steps run under bf16 autocast on a CPU too (set where the weights are bf16: models.pick_dtype's cpu_bf16)
    cpu_bf16: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 mixed precision on CUDA, and on a CPU where ``cpu_bf16`` asks for it; else fp32."""
        if self.device.type == "cuda" or (self.device.type == "cpu" and self.cpu_bf16):
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start(requested_device: str = "auto", *, cpu_bf16: bool = False) -> Placement:
    """Join the process group when launched by torchrun; set threads so processes share the cores. ``cpu_bf16``:
    steps on a CPU run under bf16 autocast."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    device = pick_device(requested_device)
    if device.type == "cuda":
        if world_size > 1:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world)))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Placement(device=device, rank=rank, local_rank=local_rank, world_size=world_size, cpu_bf16=cpu_bf16)


def stop(placement: Placement, *, failed: bool = False) -> None:
    """Leave the process group once every process is done with it: a process that tears its group down while
    a peer is still writing its results can abort at exit with the group's threads still running. A process
    that failed leaves at once (its peers may never reach the barrier; the launcher ends them)."""
    if placement.distributed and dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


def data_parallel(model: torch.nn.Module, placement: Placement) -> torch.nn.Module:
    """The model as the training steps call it: under DDP when there are several processes (gradients are
    averaged across them on backward), else the model itself."""
    if not placement.distributed:
        return model
    return DistributedDataParallel(
        model, device_ids=[placement.device.index] if placement.device.type == "cuda" else None
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every generator's state, in types that `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def all_gather(obj: object, placement: Placement) -> list:
    """Every rank's `obj`, in rank order (just [obj] outside torchrun)."""
    if not placement.distributed:
        return [obj]
    out: list = [None] * placement.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_across_ranks(values: list[float], placement: Placement) -> list[float]:
    """Each value summed over the processes, in float64."""
    if not placement.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=placement.device)
    dist.all_reduce(t)
    return t.tolist()


def mean_across_ranks(value: float, placement: Placement) -> float:
    if not placement.distributed:
        return value
    return sum_across_ranks([value], placement)[0] / placement.world_size
