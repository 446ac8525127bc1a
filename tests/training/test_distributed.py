"""Data-parallel training: two CPU processes (gloo) on halves of the points take the steps one process takes on all."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kanpde.training.distributed import shard

WORKER = Path(__file__).with_name("ddp_worker.py")


def _history(tmp_path: Path, optimizer: str, ranks: int, *flags: str, ok: bool = True) -> dict | None:
    """The history of ``optimizer``'s training on ``ranks`` torchrun ranks, or (``ranks=1``) in this process."""
    out = tmp_path / f"{optimizer}-{ranks}.json"
    if ranks == 1:
        from ddp_worker import train

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(optimizer, str(out), ranks=False)
        finally:
            torch.set_num_threads(threads)
        return json.loads(out.read_text())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", str(WORKER), optimizer,
           str(out), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if not ok:
        assert proc.returncode != 0 and not out.exists()
        return None
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _assert_same_history(two: dict, one: dict) -> None:
    for key in [k for k in one if k.startswith(("loss", "weight_")) or k in ("rel_l2", "causal_min_weight", "knot_indicator")]:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-10, atol=0, err_msg=key)


# plain Adam: test_torchrun_runs_the_command_line_on_two_ranks; rba+causal:
# test_ranks_train_like_one_process_and_resume_from_their_checkpoints
@pytest.mark.slow
def test_two_ranks_take_one_process_lbfgs_steps_on_all_the_points(tmp_path):
    """With NTK loss balancing every 2 steps and the knots moved by the residual at step 2 (the indicator and
    the hidden inputs' ranges over all ranks' points). Float64: the ranks' partial sums round differently from
    one sum, and L-BFGS's line search amplifies that over many steps (to 3e-10 after 6 steps here), so its
    trajectory is compared over 5 steps."""
    one, two = _history(tmp_path, "lbfgs", 1), _history(tmp_path, "lbfgs", 2)
    assert one["step"] == two["step"] == list(range(5))
    _assert_same_history(two, one)
    assert one["loss"][-1] < one["loss"][0]  # it trained
    assert one["knot_indicator"][2] > 0 and np.isnan(one["knot_indicator"][1])  # the knots moved at step 2


@pytest.mark.slow
def test_two_ranks_descend_the_knots_as_one_process(tmp_path):
    """Knot descent at step 2: the loss and its knot gradient summed over the ranks, so both ranks take one
    process's step (a knot change that differed by rank would part the histories)."""
    one, two = _history(tmp_path, "descend", 1), _history(tmp_path, "descend", 2)
    _assert_same_history(two, one)
    assert one["knot_indicator"][2] > 0  # the loss fell at the knot change


def test_shards_split_every_term_and_need_a_point_per_rank():
    points = {"pde": {"x": torch.arange(10.0)[:, None]}, "dirichlet": {"x": torch.arange(3.0)[:, None], "normal": torch.ones(3, 1)}}
    parts = [shard(points, r, 3) for r in range(3)]
    assert all(s.counts == {"pde": 10, "dirichlet": 3} for _, s in parts)
    torch.testing.assert_close(torch.cat([p["pde"]["x"] for p, _ in parts]), points["pde"]["x"])
    assert [len(p["dirichlet"]["normal"]) for p, _ in parts] == [1, 1, 1]
    with pytest.raises(ValueError, match="4 ranks need at least 4 points per loss term \\(pairs for a periodic one\\); dirichlet has 3"):
        shard(points, 0, 4)


@pytest.mark.slow
def test_torchrun_runs_the_command_line_on_two_ranks(tmp_path):
    """`torchrun --nproc_per_node=2 -m kanpde ...` of a time-marching run (two windows), and a submitit job of two
    tasks: rank 0 writes the one results file, whose history matches one process's, and every rank keeps one
    checkpoint per window."""
    from hydra import compose, initialize_config_dir

    from kanpde.experiment.configs import config_dir
    from kanpde.experiment.run import run
    from kanpde.io import read_results

    args = ["problem=diffusion1d", "problem.n_interior=400", "problem.n_boundary=40", "model.width=[2,4,1]", "trainer.optimizer=adam",
            "trainer.lr=1e-2", "trainer.steps=8", "trainer.marching.windows=2", "trainer.log_every=1", "trainer.progress=false",
            "plots=false", "trainer.device=cpu"]
    per_rank = {f"checkpoint.window{w}.rank{r}-of-2.pt" for w in (0, 1) for r in (0, 1)}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):  # one process: this one
        run(compose("config", overrides=args), tmp_path / "one")
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "kanpde", *args,
                            f"hydra.run.dir={tmp_path / 'two'}"], capture_output=True, text=True, timeout=300, env=env)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    one, two = read_results(tmp_path / "one" / "results.h5"), read_results(tmp_path / "two" / "results.h5")
    assert one["attrs"]["points_hash"] == two["attrs"]["points_hash"] and two["attrs"]["status"] == "ok"
    assert len(one["history"]["loss"]) == 16 and list(one["history"]["window"]) == [0] * 8 + [1] * 8
    np.testing.assert_allclose(two["history"]["loss"], one["history"]["loss"], rtol=1e-10, atol=0)
    np.testing.assert_allclose(two["attrs"]["rel_l2"], one["attrs"]["rel_l2"], rtol=1e-10, atol=0)
    assert {p.name for p in (tmp_path / "two").glob("checkpoint*.pt")} == per_rank
    for w in (0, 1):  # each rank trained every window on its own half of that window's PDE points
        shares = [torch.load(tmp_path / "two" / f"checkpoint.window{w}.rank{r}-of-2.pt", weights_only=False)["points"]["pde"]["x"]
                  for r in (0, 1)]
        assert [len(x) for x in shares] == [200, 200] and not torch.equal(shares[0], shares[1])
    # the same two ranks as the two tasks of one submitit job (what hydra/launcher=slurm_ddp submits), on this machine
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        return
    tasks = subprocess.run([sys.executable, "-m", "kanpde", "-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                            *args, f"hydra.sweep.dir={tmp_path / 'tasks'}"], capture_output=True, text=True, timeout=300, env=env)
    assert tasks.returncode == 0, tasks.stderr[-3000:]
    job = tmp_path / "tasks" / "0"
    assert read_results(job / "results.h5")["attrs"]["status"] == "ok"
    np.testing.assert_allclose(read_results(job / "results.h5")["history"]["loss"], one["history"]["loss"], rtol=1e-10, atol=0)
    assert {p.name for p in job.glob("checkpoint*.pt")} == per_rank


@pytest.mark.slow
def test_ranks_train_like_one_process_and_resume_from_their_checkpoints(tmp_path):
    """Adam with RBA, causal weights, gradient-norm loss balancing, the sparsity penalty, RAD, a grid update and
    pruning: two ranks that checkpoint every step (one file each) die at step 7 and resume, and their history
    (steps 0 to 6 before the crash, 7 to 11 after it) is one process's on all the points."""
    one = _history(tmp_path, "rba+causal", 1)
    assert one["step"] == list(range(12))
    loss = one["loss"]  # it trains between RAD's redraws (steps 5 and 10), which move the points to large residuals
    assert loss[4] < loss[0] and loss[9] < loss[5] and loss[5] > loss[4] and loss[10] > loss[9]
    _history(tmp_path, "rba+causal", 2, "--crash-at", "7", ok=False)  # the crashed run writes no history
    assert {p.name for p in tmp_path.glob("checkpoint.rank*.pt")} == {"checkpoint.rank0.pt", "checkpoint.rank1.pt"}
    two = _history(tmp_path, "rba+causal", 2, "--resume")
    assert two["step"] == list(range(12))
    _assert_same_history(two, one)


def test_edge_sizes_of_the_shards_add_up_to_the_whole_batch():
    """What data-parallel pruning and the sparsity penalty all-reduce: each rank's edge sizes, divided by the global
    count, sum to the edge scores of all the points."""
    from kanpde import KAN
    from kanpde.interpret.importance import edge_scores

    torch.manual_seed(3)
    model = KAN([2, 3, 2], grid=4).double()
    x = torch.rand(101, 2, dtype=torch.float64) * 2 - 1
    parts = [model.edge_sizes(x[part], count=len(x)) for part in (slice(0, 40), slice(40, 101))]
    for a, b, whole in zip(*parts, edge_scores(model, x)):
        torch.testing.assert_close(a + b, whole, rtol=1e-13, atol=0)


def test_periodic_pairs_stay_together_on_their_rank():
    """A periodic term's points are pairs (first half against second half): each rank gets whole pairs, in that layout."""
    low = torch.arange(7.0)[:, None]
    points = {"periodic": {"x": torch.cat([low, low + 100])}}
    parts = [shard(points, r, 3, paired={"periodic"}) for r in range(3)]
    for mine, shards in parts:
        x = mine["periodic"]["x"][:, 0]
        n = len(x) // 2
        assert len(x) % 2 == 0 and torch.equal(x[n:], x[:n] + 100)
        assert shards.counts == {"periodic": 14} and shards.local == {"periodic": len(x)}
    torch.testing.assert_close(torch.cat([m["periodic"]["x"][: len(m["periodic"]["x"]) // 2] for m, _ in parts]), low)
    # one value per pair: the ranks' shares of the mean add up to the mean over all pairs
    values = [torch.arange(float(len(m["periodic"]["x"]) // 2)) + i for i, (m, _) in enumerate(parts)]
    whole = torch.cat(values)
    assert float(sum(s.mean("periodic", v) for v, (_, s) in zip(values, parts))) == pytest.approx(float(whole.mean()), rel=1e-14)
    with pytest.raises(ValueError, match="periodic has 7 pairs"):
        shard(points, 0, 8, paired={"periodic"})
