"""One rank of the data-parallel test (started by tests/training/test_distributed.py through torchrun), or
:func:`train` with ``ranks=None``: the same training in one process on all the points (the test calls it in
its own process).  Writes the history as JSON."""
from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

from kanpde import KAN, Trainer
from kanpde.problems.heat import Diffusion1D
from kanpde.problems.transport import Convection1D
from kanpde.training.distributed import init, shard


def train(optimizer: str, out: str, ranks: bool = True, crash_at: int | None = None, resume: bool = False) -> None:
    """Train as ``optimizer`` says ("lbfgs", "descend": Adam with knot descent, or "rba+causal": Adam with every
    technique that runs data-parallel)
    in float64, on this rank's share of the points (``ranks``) or on all of them; rank 0 writes the history."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        _train(optimizer, out, ranks, crash_at, resume)
    finally:
        torch.set_default_dtype(default)


def _train(optimizer: str, out: str, ranks: bool, crash_at: int | None, resume: bool) -> None:
    techniques = optimizer == "rba+causal"  # Adam with residual-based attention and causal weights, on a problem in time
    # L-BFGS on convection1d: its periodic condition's point pairs are shared out by pairs (one value per pair)
    problem = Diffusion1D(n_interior=400, n_boundary=40) if techniques else Convection1D(n_interior=400, n_boundary=40)
    torch.manual_seed(0)
    model = KAN([2, 4, 1], grid=5, bounds=[b.tolist() for b in problem.domain.bounds()])
    points = problem.sample_points(0)
    descend = optimizer == "descend"  # Adam, with the knots moved down the loss's gradient summed over the ranks
    settings = dict(optimizer="adam" if techniques or descend else optimizer, steps=5 if optimizer in ("lbfgs", "descend") else 12,
                    log_every=1, progress=False, device="cpu", lr=1e-2, grid_extension={"at": [], "grids": []})
    if descend:
        settings["knots"] = {"method": "descend", "every": 2, "until": 3, "descent_steps": 2}
    elif not techniques:  # NTK loss balancing every 2 steps, on a subsample of all ranks' points (periodic pairs kept)
        settings["loss"] = {"balance": "ntk", "balance_period": 2, "ntk_points": 16}
        # knots moved by the residual at step 2, the hidden layer's grown first to cover its inputs on all ranks
        settings["knots"] = {"method": "move", "indicator": "residual", "every": 2, "until": 3, "follow": True}
    if techniques:  # every technique that runs data-parallel, each reading all ranks' points where it reads points
        settings["loss"] = {"rba": True, "causal": {"eps": 1.0, "slabs": 4},
                            "balance": "grad_norm", "balance_period": 3}  # term weights from the global gradients
        settings.update(grid_extension={"at": [4], "grids": [10]}, grid_update="extension")  # hidden grid to its inputs' range
        settings["reg"] = {"l1": 1e-2, "entropy": 1e-2}  # the sparsity penalty of the edges' sizes over all ranks' points
        settings["sampler"] = {"adaptive": "rad", "pool": 1001, "period": 5}  # PDE points redrawn at steps 5 and 10
        settings.update(prune_at=8, prune_threshold=0.015)  # drops hidden node 2 (its edge scores 0.008 at step 8; the next 0.021)
        settings["symbolic"] = {"at": 11, "library": ["x", "sin", "exp"]}  # every edge a closed form fitted on all points
    if not ranks:
        result = Trainer(**settings).fit(problem, model, points)
    else:
        init("cpu")
        rank, size = dist.get_rank(), dist.get_world_size()
        mine, shards = shard(points, rank, size, problem.paired_terms)
        if crash_at is not None or resume:  # every rank checkpoints; a crash at one step stops them all
            from kanpde import Callback
            from kanpde.training.callbacks.checkpointing import Checkpointing

            class CrashAt(Callback):
                def on_step_start(self, state):
                    if state.step == crash_at:
                        raise SystemExit(3)

            path = os.path.join(os.path.dirname(out), f"checkpoint.rank{rank}.pt")
            trainer = Trainer(callbacks=[CrashAt()], **settings)
            result = trainer.fit(problem, model, mine, shards=shards, extra_callbacks=[Checkpointing(path, 1, trainer.steps)],
                                 resume=path if resume else None)
        else:
            result = Trainer(**settings).fit(problem, model, mine, shards=shards)
        assert sum(len(p["x"]) for p in mine.values()) < sum(len(p["x"]) for p in points.values()), "each rank trains on a share"
        if rank != 0:
            return
    assert result.status == "ok", result.message
    assert not techniques or (result.pruned_width == [2, 3, 1] and result.symbolic), (result.pruned_width, result.symbolic)
    with open(out, "w") as f:
        json.dump({k: v for k, v in result.history.items() if k != "time_s"} | {"pid": os.getpid()}, f, allow_nan=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv
    train(args[1], args[2], crash_at=int(args[args.index("--crash-at") + 1]) if "--crash-at" in args else None,
          resume="--resume" in args)
