"""``python -m kanpde.interpret RUN_DIR``: draw a trained KAN's activations, and optionally its formula.

Reads the run's ``model.pt`` and ``results.h5``; the edges are shown over the evaluation points
stored there (they cover the domain).  ``--formula`` fits every numeric edge to the symbolic
library on a copy of the network (no retraining: the ``+experiment=symbolic`` preset retrains)
and prints the formula with its relative L2 error on the evaluation points.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

from kanpde.io import load_model, read_results
from kanpde.models.kan import KAN
from kanpde.interpret import formula as formulas
from kanpde.interpret.activations import plot_activations
from kanpde.interpret.auto_symbolic import auto_symbolic, check_library


class InterpretError(Exception):
    """A one-line reason why the run cannot be interpreted."""


def load_run(run_dir: Path) -> tuple[KAN, dict]:
    """The KAN and results of a finished run, or an InterpretError saying what is missing or wrong."""
    if not run_dir.is_dir():
        raise InterpretError(f"no such folder: {run_dir}")
    missing = [n for n in ("model.pt", "results.h5") if not (run_dir / n).is_file()]
    if missing:
        raise InterpretError(f"no kanpde run in {run_dir}: {' and '.join(missing)} missing")
    model = load_model(run_dir / "model.pt")
    if not isinstance(model, KAN):
        raise InterpretError(f"{run_dir} is a {type(model).__name__} run; activations and formulas need a KAN")
    return model.double(), read_results(run_dir / "results.h5")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanpde.interpret", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run's output folder (holds model.pt and results.h5)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the figure (default RUN_DIR/activations.png)")
    parser.add_argument("--formula", action="store_true", help="fit every numeric edge and print the network's formula")
    parser.add_argument("--digits", type=int, default=4, help="significant digits of the formula (default 4)")
    parser.add_argument("--library", nargs="+", default=None, help="function names to fit (default: the whole library)")
    parser.add_argument("--penalty", type=float, default=1.0, help="complexity penalty of the fit choice (default 1)")
    args = parser.parse_args(argv)
    try:
        if args.digits < 1:
            raise InterpretError(f"--digits must be a positive integer, got {args.digits}")
        library = check_library(args.library) if args.library is not None else None
        model, results = load_run(args.run_dir)
        attrs = results["attrs"]
        inputs, outputs = str(attrs["inputs"]).split(","), str(attrs["outputs"]).split(",")
        x = torch.as_tensor(np.asarray(results["eval"]["x"]), dtype=torch.float64)
        path = plot_activations(model, x, args.out or args.run_dir / "activations.png", inputs, outputs,
                                title=f"{attrs.get('problem', '')}: KAN {model.width}")
        print(f"kanpde.interpret: wrote {path}")
        if attrs.get("formula"):
            print(f"kanpde.interpret: formula of the run: {attrs['formula']}")
        if args.formula:
            if attrs.get("hard_constraints"):
                raise InterpretError("the run imposed conditions exactly (u = lift + distance·network); the network alone is not u")
            net = copy.deepcopy(model)
            auto_symbolic(net, x, library, args.penalty)
            exprs = formulas.formula(net, inputs, args.digits)
            line = formulas.to_text(exprs, outputs)
            ref = results["eval"].get("u_exact")
            if ref is not None:
                err = formulas.evaluate(exprs, inputs, x) - ref
                line += f"  (rel L2 {np.linalg.norm(err) / np.linalg.norm(ref):.2e} on the evaluation points, without retraining)"
            print(f"kanpde.interpret: {line}")
    except (InterpretError, ValueError) as e:
        print(f"kanpde.interpret: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
