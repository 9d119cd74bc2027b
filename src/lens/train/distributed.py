"""Process group and device: one CPU process, or `torchrun` ranks on gloo (CPU) / NCCL (GPU).

Everything else asks this module for rank, world size, device and the few collectives the trainer
needs, so the single-process path runs without any process group at all.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lens.errors import LensError


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    mesh: object | None  # DeviceMesh over all ranks when FSDP is on

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def initialized(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LensError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def single_process_env() -> None:
    """torchrun's variables for a one-process group on a free local port."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
    )


def init_distributed(train_cfg, parallel_cfg) -> DistInfo:
    """Read torchrun's environment, pick the device, and start a process group when needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(train_cfg.device, local_rank)
    # On GPU FSDP2 is also the mixed-precision path of a single process (bf16 compute copies of fp32
    # master weights, fp32 reductions), as in torchtitan; on CPU a single process runs plain.
    fsdp = parallel_cfg.fsdp == "on" or (parallel_cfg.fsdp == "auto" and (world > 1 or device.type == "cuda"))
    if world > 1 and parallel_cfg.fsdp == "off":
        raise LensError("parallel.fsdp=off with several processes: Lens shards with FSDP2; use auto or on")
    mesh = None
    if fsdp:
        if "MASTER_ADDR" not in os.environ:
            if world > 1:
                raise LensError("several processes need a torchrun launch (MASTER_ADDR is not set)")
            single_process_env()
        backend = parallel_cfg.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            kwargs = {"device_id": device} if device.type == "cuda" else {}
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30), **kwargs)
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(device.type, (world,), mesh_dim_names=("fsdp",))
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device, mesh=mesh)


def barrier(info: DistInfo) -> None:
    if info.initialized:
        dist.barrier()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a few floats over ranks (float64, so token counts stay exact)."""
    if not info.initialized:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank gets the list of every rank's object (small JSON-able state)."""
    if not info.initialized:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def shutdown(info: DistInfo) -> None:
    if info.initialized:
        dist.destroy_process_group()
