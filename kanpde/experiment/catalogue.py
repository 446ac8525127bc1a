"""``python -m kanpde.experiment.catalogue``: the problems the configs offer, with their inputs, outputs,
domain, conditions and the literature's figures.

It reads ``conf/problem/*.yaml`` and builds each problem from its ``_target_`` (so a problem
added there, or on Hydra's search path, is listed without editing kanpde).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kanpde.experiment.configs import config_dir
from kanpde.pde.problem import Problem


def problem_configs(directory: Path | None = None) -> dict[str, Path]:
    """Problem config name -> its YAML file, sorted by name."""
    directory = directory or config_dir() / "problem"
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def load_problem(name: str, directory: Path | None = None) -> Problem:
    """Build the problem of config ``name`` with its configured values."""
    from kanpde.experiment.run import build  # run imports the trainer and models; only needed here

    configs = problem_configs(directory)
    if name not in configs:
        raise KeyError(f"unknown problem {name!r}; the configs offer {', '.join(configs)}")
    return build("problem", OmegaConf.to_container(OmegaConf.load(configs[name]), resolve=True))


def describe(problem: Problem) -> dict[str, Any]:
    """What a user needs to know about a problem, as plain values."""
    conditions = []
    for c in problem.conditions:
        hard = " (hard)" if c.name in problem.hard_terms else ""
        conditions.append(f"{c.name}: {type(c).__name__} on {c.output}{hard}")
    has_exact = problem.exact(problem.domain.sample_interior(1, "uniform", 0)) is not None
    return {
        "name": problem.name,
        "class": f"{type(problem).__module__}.{type(problem).__qualname__}",
        "inputs": list(problem.inputs),
        "outputs": list(problem.outputs),
        "domain": repr(problem.domain),
        "conditions": conditions,
        "unknowns": {k: float(v.detach()) for k, v in problem.unknowns.items()},
        "solution": "exact" if has_exact else "reference" if type(problem).reference is not Problem.reference else "none",
        "summary": (type(problem).__doc__ or "").strip().splitlines()[0] if type(problem).__doc__ else "",
        "published": [dict(p) for p in problem.published],
    }


def _published(p: dict[str, Any]) -> str:
    n = p.get("params")
    params = f", {n:,} params" if isinstance(n, int) else f", {n} params" if n else ""
    source = f" ({p['source']})" if p.get("source") else ""
    return f"{p['method']}: {p['metric']} {p['value']:.2e}{params}{source}"


def format_text(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        out.append(f"{r['config']}  [{r['class']}]")
        out.append(f"  {r['summary']}")
        out.append(f"  inputs {tuple(r['inputs'])} -> outputs {tuple(r['outputs'])} on {r['domain']}; solution: {r['solution']}")
        out.append(f"  conditions: {'; '.join(r['conditions']) or 'none'}")
        if r["unknowns"]:
            out.append(f"  unknowns: {r['unknowns']}")
        for p in r["published"]:
            out.append(f"  published: {_published(p)}")
        out.append("")
    return "\n".join(out)


def format_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| problem | inputs → outputs | domain | conditions | solution | published |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['config']}` | {', '.join(r['inputs'])} → {', '.join(r['outputs'])} | {r['domain']} | "
                     f"{'; '.join(r['conditions'])} | {r['solution']} | {'; '.join(map(_published, r['published'])) or '—'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kanpde.experiment.catalogue", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="problem configs to show (default: all)")
    parser.add_argument("--markdown", action="store_true", help="one Markdown table instead of text")
    args = parser.parse_args(argv)
    configs = problem_configs()
    unknown = [n for n in args.names if n not in configs]
    if unknown:
        print(f"kanpde.experiment.catalogue: unknown problem(s) {', '.join(unknown)}; the configs offer {', '.join(configs)}", file=sys.stderr)
        return 2
    rows = []
    for name in args.names or configs:
        rows.append({"config": name, **describe(load_problem(name))})
    print(format_markdown(rows) if args.markdown else format_text(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
