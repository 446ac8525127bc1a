"""Shared fixtures."""
from __future__ import annotations

import os

import pytest
import torch

# Without a GPU the Triton kernels' tests run in Triton's interpreter, which has to be chosen before Triton is
# first imported (tests/models/test_triton_jet.py); with one they run the compiled kernels on the GPU.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # parallel workers share the cores: one share of torch's threads each
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_share)
    # and so do the runs the tests start as subprocesses (two workers each starting a 2-thread run on two cores
    # oversubscribe them, and OpenMP's waiting threads then spin against each other)
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))


@pytest.fixture
def f64():
    """Run a test with float64 as torch's default dtype, restoring the previous default after."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def load_script(name: str):
    """The module ``scripts/<name>.py``, loaded from its path (scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_config(*overrides: str):
    """The CLI's config for ``overrides``, composed the way ``python -m kanpde`` composes it."""
    from hydra import compose, initialize_config_dir

    from kanpde.experiment.configs import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def setup_kan(problem, width, seed=0):
    """A float64 KAN for ``problem`` (seeded) and the problem's points for that seed."""
    from kanpde.models import KAN

    torch.manual_seed(seed)
    lower, upper = problem.domain.bounds()
    return KAN(width, grid=5, bounds=(lower.tolist(), upper.tolist())).double(), problem.sample_points(seed)


@pytest.fixture
def poisson():
    """Poisson1D with 200 interior points: a small problem for training tests."""
    from kanpde.problems.poisson import Poisson1D

    return Poisson1D(n_interior=200)


def jet_loss(parts) -> torch.Tensor:
    """A loss that uses every part of a jet (value, first and second partials), each weighted differently."""
    return sum((p * (j + 1)).square().mean() for j, p in enumerate(parts))


def kernel_jet_and_grads(model, x: torch.Tensor, pairs, kernel: bool):
    """A KAN's jet at x and the parameter gradients of :func:`jet_loss` of it, with the CPU kernel on or off:
    (parts, {name: gradient}, how many layers the kernel computed)."""
    from kanpde.models import layer_op, native

    calls = []
    apply = layer_op.layer_jet

    def counting(*args):
        calls.append(1)
        return apply(*args)

    model.zero_grad(set_to_none=True)
    layer_op.layer_jet = counting
    try:
        with native.switched(kernel):
            jet = model.forward_jet(x, pairs)
    finally:
        layer_op.layer_jet = apply
    parts = [jet.value, jet.first] + ([jet.second] if pairs else [])
    jet_loss(parts).backward()
    return [p.detach() for p in parts], {n: p.grad.clone() for n, p in model.named_parameters()}, len(calls)
