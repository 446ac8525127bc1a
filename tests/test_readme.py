"""The README's problem example is real code: its exact solution satisfies its residual."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from kanpde import Fields

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_problem_example_is_consistent():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "class Helmholtz2D(Problem)" in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    problem = namespace["Helmholtz2D"](k=1.0, n_interior=200)
    x = problem.sample_points(0)["pde"]["x"]

    class Exact(nn.Module):
        def forward(self, x):
            return problem.exact(x)

    r = problem.residual(Fields(Exact(), x, problem.inputs, problem.outputs))
    assert r.abs().max() < 1e-9
    # and a wrong candidate does not satisfy it
    class Wrong(nn.Module):
        def forward(self, x):
            return 1.01 * problem.exact(x)

    assert problem.residual(Fields(Wrong(), x, problem.inputs, problem.outputs)).abs().max() > 1e-2
