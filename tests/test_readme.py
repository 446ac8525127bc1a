"""The README's problem example is real code: its exact solution satisfies its residual and conditions."""
from __future__ import annotations

import re
from pathlib import Path

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
