"""The README's problem example is real code: its exact solution satisfies its residual and conditions."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_problem_example_is_consistent():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "class DiskCooling(Problem)" in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    problem = namespace["DiskCooling"](kappa=0.1, n_interior=200, n_boundary=100)
    points = problem.sample_points(0)

    class Model(nn.Module):
        def __init__(self, bump):
            super().__init__()
            self.bump = bump

        def forward(self, x):
            return problem.exact(x) + self.bump * (x[:, :1] ** 2 * x[:, 2:])

    losses = problem.losses(Model(0.0), points, "autograd")
    assert set(losses) == {"pde", "robin", "initial"}
    assert all(float(v.detach()) < 1e-24 for v in losses.values())
    # and a wrong candidate (zero at t = 0, so the initial term cannot tell) does not satisfy the others
    wrong = problem.losses(Model(0.05), points, "autograd")
    assert float(wrong["pde"].detach()) > 1e-6 and float(wrong["robin"].detach()) > 1e-6


@pytest.mark.slow
def test_readme_python_api_example_runs(tmp_path, monkeypatch):
    """The notebook example, shortened (fewer points and steps), trains and writes the CLI's files."""
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "kanpde.solve(" in b)
    short = (example.replace("steps=500", "steps=30").replace('"at": [300]', '"at": [15]')
             .replace("Poisson2D()", "Poisson2D(n_interior=300, n_boundary=40)"))
    assert short != example
    namespace: dict = {}
    exec(compile(short, "README.md", "exec"), namespace)
    run = namespace["run"]
    assert run.history["grid"][-1] == 10 and run.history["loss"][-1] < run.history["loss"][0]
    assert {p.name for p in (tmp_path / "runs" / "poisson2d").iterdir()} >= {"results.h5", "model.pt", "checkpoint.pt", "solution.png"}
