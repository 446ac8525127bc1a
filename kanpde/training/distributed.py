"""Data-parallel training with ``torch.distributed``: each rank holds a shard of the collocation points.

Every rank keeps the same parameters.  A rank's loss is its share of the global loss, each term's
squared residuals summed over its own points and divided by the term's global point count, so
the shares add up to the global loss; gradients and loss values are all-reduced (summed) before
the optimiser sees them, so Adam and L-BFGS (whose line search reads the loss) take the same
step on every rank as one process would on the union of the points.  ``torchrun
--nproc_per_node=N -m kanpde ...`` starts the ranks on one node, and so does a submitit job with several
tasks (``hydra/launcher=slurm_ddp``: tasks per node = GPUs, on one node or several): gloo on the CPU,
NCCL with one GPU per rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from kanpde.pde.problem import Points


@dataclass
class Shards:
    """This process's place among the ranks, each loss term's global number of points, and this rank's (None: as
    many as the global, one rank)."""

    rank: int
    size: int
    counts: dict[str, int]
    local: dict[str, int] | None = None

    def mean(self, term: str, values: torch.Tensor) -> torch.Tensor:
        """This rank's share of the global mean of ``values`` (n,) over all ranks' points of ``term``.

        A term may give more or fewer values than points (a periodic pair gives one value per pair and part);
        that ratio is the same on every rank, so the global number of values is ``counts`` times it."""
        local = self.counts[term] if self.local is None else self.local[term]
        return values.sum() / (self.counts[term] * values.numel() / local)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over the ranks (a new tensor; no gradient flows through it)."""
        out = value.detach().clone()
        dist.all_reduce(out)
        return out

    def max(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` maximised over the ranks."""
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
        return out

    def gather(self, piece: torch.Tensor, total: int) -> torch.Tensor:
        """Every rank's ``piece`` of a ``total``-row tensor (split over the ranks as ``torch.tensor_split`` splits
        it), concatenated in rank order on every rank."""
        lengths = [total // self.size + (r < total % self.size) for r in range(self.size)]  # tensor_split's sizes
        padded = piece.new_zeros(max(lengths), *piece.shape[1:])
        padded[: len(piece)] = piece.detach()
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, lengths)])

    def extremes(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest ``lo`` and largest ``hi`` over the ranks (the inputs' ranges a grid update covers)."""
        out = lo.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.MIN)
        return out, self.max(hi)

    def reduce_gradients_of(self, params: list[nn.Parameter]) -> None:
        """Sum every parameter's gradient over the ranks, in one flat all-reduce."""
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()


def ranks() -> int:
    """How many ranks train together (1 unless a process group is running)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def launched() -> bool:
    """Whether this process is one of several: started by torchrun (``WORLD_SIZE`` > 1), or one task of a
    submitit job with several tasks (:func:`submitit_tasks`, which then sets torchrun's variables)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or submitit_tasks() > 1


def submitit_tasks() -> int:
    """The number of tasks of the submitit job this process runs in (Hydra's ``slurm`` and ``submitit_local``
    launchers with ``tasks_per_node`` or ``nodes`` above 1), 0 outside one.  Where there are several, and
    torchrun's variables are not set, it exports them (rank, world size, local rank, the first node as the
    rendezvous) with submitit's own helper, so that the ranks meet as torchrun's would."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return 0
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    n = JobEnvironment().num_tasks
    if n > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # LOCAL_RANK picks the GPU (init)
    return n


def init(device: str) -> str:
    """Join the process group torchrun set up (gloo on the CPU, NCCL on GPUs) and return this rank's device."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"


def shard(points: Points, rank: int, size: int, paired: Iterable[str] = ()) -> tuple[Points, Shards]:
    """Rank ``rank``'s contiguous share of every term's points, and the global counts; each rank needs a point per term.

    The ``paired`` terms' points come as pairs, the first half matched with the second (periodic conditions):
    those are shared out by pairs, each rank's share again its pairs' first halves, then their second halves."""
    paired = set(paired)
    counts = {t: len(next(iter(p.values()))) for t, p in points.items()}
    have = {t: n // 2 if t in paired else n for t, n in counts.items()}
    small = {t: n for t, n in have.items() if n < size}
    if small:
        raise ValueError(f"{size} ranks need at least {size} points per loss term (pairs for a periodic one); "
                         + ", ".join(f"{t} has {n}{' pairs' if t in paired else ''}" for t, n in small.items()))
    mine = {}
    for t, p in points.items():
        if t in paired:
            half = counts[t] // 2
            pairs = torch.tensor_split(torch.arange(half), size)[rank]
            index = torch.cat([pairs, pairs + half]).to(next(iter(p.values())).device)
            mine[t] = {k: v[index] for k, v in p.items()}
        else:
            mine[t] = {k: torch.tensor_split(v, size)[rank] for k, v in p.items()}
    local = {t: len(next(iter(p.values()))) for t, p in mine.items()}
    return mine, Shards(rank, size, counts, local)
