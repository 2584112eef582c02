"""One trial on several processes: the process group, the launcher and data sharding.

``train.batch_size`` stays the *global* batch. Every rank draws the same global batches from
the same seeded generator and trains on its contiguous shard of each (sizes differ by at most
one), so the schedule clock (optimizer steps) is that of a single-process run. Gradients are
combined as ``sum over ranks of (shard mean x shard size / global batch size)``: the global
mean, exactly the single-process update whatever the shard sizes (with equal shards this is
DDP's own average). DP regimes use Opacus' DP-DDP instead (see ``regimes/dp.py``).

Works with ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK from the environment) or launched here
with :func:`launch`. Backend gloo on CPU, nccl on CUDA with one GPU per rank (LOCAL_RANK).
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import RandomSampler

from robustlr.errors import InputError


@dataclass(frozen=True)
class World:
    """This process's place among the processes training one trial (size 1: no group)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on one of them."""
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def sum(self, *values: Any, device: torch.device) -> list[float]:
        """Each value (a number or a one-element tensor) summed over the ranks."""
        total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()


def from_env() -> World | None:
    """The world torchrun (or :func:`launch`) describes in the environment, or None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return World(rank=rank, size=size, local_rank=int(os.environ.get("LOCAL_RANK", rank)))


class DeviceError(InputError):
    """``train.device`` cannot serve this many processes; one line for the user."""


def check_device(name: str, nproc: int) -> None:
    """Fail before any process starts (creates no CUDA context)."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return
    if not torch.cuda.is_available():
        raise DeviceError(f"{name!r} but CUDA is not available; use auto or cpu")
    if name.startswith("cuda:") and nproc > 1:
        raise DeviceError(f"{name!r} pins one GPU; with several processes use auto or cuda "
                          "(each process takes the GPU of its LOCAL_RANK)")
    if nproc > torch.cuda.device_count():
        raise DeviceError(f"{nproc} processes need one GPU each but "
                          f"{torch.cuda.device_count()} are visible; use fewer or device cpu")


def resolve_device(name: str, world: World | None = None) -> torch.device:
    """The one reading of a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) for a
    process, alone or a rank of several; CUDA asked for where there is none is a
    :class:`DeviceError`."""
    if world is not None and world.distributed:
        return rank_device(name, world)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"{name!r} but CUDA is not available; use auto or cpu")
    return torch.device(name)


def rank_device(name: str, world: World) -> torch.device:
    """``auto``/``cuda`` mean this rank's GPU (LOCAL_RANK); ``cpu`` stays the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    check_device(name, world.size if name.startswith("cuda:") else world.local_rank + 1)
    index = int(name.split(":")[1]) if name.startswith("cuda:") else world.local_rank
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_group(world: World, device: torch.device) -> None:
    """Join the process group (env:// rendezvous: MASTER_ADDR and MASTER_PORT)."""
    if world.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                init_method="env://", rank=world.rank, world_size=world.size)


def close_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(fn: Callable[..., None], nproc: int, *args: Any) -> None:
    """Run ``fn(world, *args)`` in ``nproc`` new processes on this machine and wait for all.

    fork while no CUDA context exists (children inherit the loaded data; a forked CUDA
    context breaks), else spawn. A failing rank ends the others and raises
    ``torch.multiprocessing.ProcessRaisedException`` here with its traceback.
    """
    method = "spawn" if torch.cuda.is_initialized() else "fork"
    mp.start_processes(_rank_entry, args=(fn, nproc, _free_port(), args), nprocs=nproc,
                       join=True, start_method=method)


def _rank_entry(rank: int, fn: Callable[..., None], nproc: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(nproc))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))  # no oversubscription
    fn(World(rank=rank, size=nproc, local_rank=rank), *args)


def shard(index: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous part of a global batch's indices."""
    return index.tensor_split(world.size)[world.rank]


class ShardedBatches:
    """``trainer.TensorBatches``' global batches (same permutation, same generator use), of
    which each rank yields its shard; ``fraction`` is the current shard's share."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                 generator: torch.Generator, device: torch.device, world: World):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.generator, self.world = batch_size, generator, world
        self.fraction = 1.0 / world.size

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.generator).to(self.x.device)
        for index in order.split(self.batch_size):
            part = shard(index, self.world)
            self.fraction = len(part) / len(index)
            yield self.x[part], self.y[part]


def check_batches(n: int, batch_size: int, world: World) -> None:
    """Every rank needs at least one example of every (non-Poisson) global batch."""
    smallest = n % batch_size or batch_size
    if world.distributed and min(batch_size, smallest) < world.size:
        raise ValueError(f"train.batch_size {batch_size} over {n} training examples leaves a "
                         f"batch of {smallest} for {world.size} processes; every process needs "
                         "one example: change the batch size or use fewer processes")


def _weighted_allreduce(loader: ShardedBatches, bucket):  # DDP rejects a string annotation
    grads = bucket.buffer().mul_(loader.fraction)
    return dist.all_reduce(grads, async_op=True).get_future().then(lambda done: done.value()[0])


def data_parallel(model: nn.Module, loader: ShardedBatches, device: torch.device) -> nn.Module:
    """DDP whose all-reduce weights each rank's gradient by its shard's share of the batch."""
    wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    wrapped.register_comm_hook(loader, _weighted_allreduce)
    return wrapped


def local_module(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (attacks run on it: no gradient sync, no collectives)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class ShardedSampler:
    """Batch sampler for Opacus' DP-DDP: the global batch of a single-process DP run, sharded.

    Poisson: each example joins the global batch with probability 1 / ceil(N / B) (Opacus'
    rate for a loader of batch size B), one mask per step from a generator seeded alike on
    every rank, so the global batch is a true Poisson sample and each rank takes its shard;
    empty shards are yielded too, so every rank takes the same steps (Opacus' own
    ``DistributedUniformWithReplacementSampler`` skips a rank's empty batch, and draws the
    ranks' masks from one seed, correlating them). Without Poisson: the permutation of
    ``RandomSampler(generator)``, batches of B, as the single-process DP regime draws them.
    """

    def __init__(self, n: int, *, batch_size: int, generator: torch.Generator, world: World,
                 poisson: bool):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.world, self.poisson = world, poisson
        self.sample_rate = 1 / math.ceil(n / batch_size)

    def __len__(self) -> int:
        return int(1 / self.sample_rate) if self.poisson else math.ceil(self.n / self.batch_size)

    def __iter__(self):
        if self.poisson:
            for _ in range(len(self)):
                mask = torch.rand(self.n, generator=self.generator) < self.sample_rate
                yield shard(mask.nonzero().reshape(-1), self.world).tolist()
            return
        order = torch.tensor(list(RandomSampler(range(self.n), generator=self.generator)))
        for index in order.split(self.batch_size):
            yield shard(index, self.world).tolist()


def private_loader(x: torch.Tensor, y: torch.Tensor, *, batch_size: int,
                   generator: torch.Generator, world: World, poisson: bool):
    """A DataLoader over :class:`ShardedSampler` that collates empty shards too (for
    ``make_private(poisson_sampling=False)``: the sampling is already done here)."""
    from opacus.data_loader import wrap_collate_with_empty
    from torch.utils.data import DataLoader, TensorDataset, default_collate

    collate = wrap_collate_with_empty(collate_fn=default_collate,
                                      sample_empty_shapes=[(0, *x.shape[1:]), (0, *y.shape[1:])],
                                      dtypes=[x.dtype, y.dtype])
    sampler = ShardedSampler(len(y), batch_size=batch_size, generator=generator, world=world,
                             poisson=poisson)
    return DataLoader(TensorDataset(x, y), batch_sampler=sampler, collate_fn=collate)
