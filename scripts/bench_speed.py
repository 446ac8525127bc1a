"""Speed of one physics-informed training step on the KAN paper's Poisson problem: KAN against MLPs and pykan.

    python scripts/bench_speed.py --quick            # N = 1k, 10k in float32: about a minute on 2 cores
    python scripts/bench_speed.py                    # N = 1k, 10k, 100k in float32 and float64
    python scripts/bench_speed.py --out bench.csv --compile
    python scripts/bench_speed.py --n 10000 --grids 5 20 100 200   # cost against the grid size

For every (model, N, dtype, derivative back end) it times, in this one process so that the ratios
are taken side by side:

* ``ms_eval``: one loss + parameter-gradient evaluation (the PDE residual's Laplacian and the
  boundary term, as training computes them), median of ``--repeats`` after warm-up;
* ``ms_step``: one step of the trainer's default optimiser (L-BFGS, one iteration with a
  strong-Wolfe line search, so one or more evaluations), median of ``--repeats``/4 (at least 3);
* ``n_params``: the parameters the loss depends on (those that receive a gradient);
* ``peak_mem_mb``: peak memory of one evaluation above what was allocated before it (CUDA: the
  allocator's peak; CPU: the running sum of the profiler's allocation records).

Models: KAN [2,10,1] G=5 k=3 with both back ends, the forward one twice: with the layer's kernel
(``forward``: the C kernel of ``kanpde/models/layer_jet.c`` on the CPU where it builds, the Triton kernel
on CUDA where Triton is installed) and with torch operations only (``forward-torchops``); the same
KAN on free (non-uniform) knots with the kernel (its cell lookup a binary search); an
MLP [2,w,w,1] with the KAN's parameter count;
the paper's MLP [2,100,100,100,1]; and pykan 0.2.8's KAN of the same width and grid through its
own forward and nested autograd (``pip install -e ".[bench]"``; skipped with a note otherwise).
"""
from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kanpde import KAN, MLP  # noqa: E402
from kanpde.models import native, triton_jet  # noqa: E402
from kanpde.training.trainer import Trainer  # noqa: E402
from kanpde.problems.poisson import Poisson2D  # noqa: E402

COLUMNS = ["model", "family", "n_params", "n_points", "dtype", "backend", "ms_eval", "ms_step", "peak_mem_mb"]
BOUNDS = ([-1.0, -1.0], [1.0, 1.0])


def equal_mlp_width(n_params: int) -> int:
    """The width w whose MLP [2, w, w, 1] has the parameter count closest to ``n_params``."""
    return min(range(1, 200), key=lambda w: abs((3 * w) + (w * w + w) + (w + 1) - n_params))


def pykan_model(width: list[int], grid: int, k: int, device: torch.device = torch.device("cpu")) -> nn.Module | None:
    """pykan's KAN (MultKAN) in its speed mode, or None when pykan is not installed."""
    try:
        from kan import KAN as PyKAN
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        model = PyKAN(width=list(width), grid=grid, k=k, seed=0, auto_save=False, ckpt_path=tmp, device=str(device))  # it rewrites the list it gets
    return model.speed()


def free_knot_kan(cfg: dict, seed: int = 0) -> KAN:
    """The KAN of ``cfg`` with free knots: each interior knot moved by up to 30 % of the spacing (so the cell
    lookup is a genuine binary search), the splines refitted to them."""
    model = KAN(**cfg, bounds=BOUNDS)
    generator = torch.Generator().manual_seed(seed)
    for layer in model.layers:
        t = layer.knot_vector().clone()
        k, h = layer.k, layer.grid_h.unsqueeze(1)
        t[:, k + 1 : -k - 1] += 0.3 * h * (2 * torch.rand(t[:, k + 1 : -k - 1].shape, generator=generator, dtype=t.dtype) - 1)
        layer.move_knots(t)
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(fns: list[Callable[[], object]], repeats: int, device: torch.device, warmup: int = 3) -> list[float]:
    """Median wall time (ms) of each function, timed in rounds that call every function once, so
    that a slow spell of the machine affects all of them alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            ts.append(time.perf_counter() - start)
    return [1e3 * statistics.median(ts) for ts in times]


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory one call of ``fn`` allocates on top of what was there before, in MiB."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak / 2**20


class Case:
    """One table row: a model with a derivative back end on a problem's points."""

    def __init__(self, name: str, family: str, model: nn.Module, backend: str, problem: Poisson2D, points,
                 dtype: torch.dtype, device: torch.device, kernel: bool = True) -> None:
        self.name, self.family, self.backend, self.kernel = name, family, backend, kernel
        self.model = nn.Module.to(model, device=device, dtype=dtype)  # pykan's own .to takes a device only
        self.problem, self.points, self.dtype = problem, points, dtype
        self.optimizer = Trainer(optimizer="lbfgs", progress=False).make_optimizer(self.model, 0)

    def evaluate(self) -> torch.Tensor:
        """Loss and parameter gradient, as one training evaluation computes them."""
        self.model.zero_grad(set_to_none=True)
        with native.switched(self.kernel):
            terms = self.problem.losses(self.model, self.points, self.backend)
            loss = sum(self.problem.weights[t] * v for t, v in terms.items())
            loss.backward()
        return loss

    def step(self) -> None:
        """One step of the trainer's default optimiser (L-BFGS with a strong-Wolfe line search)."""
        self.optimizer.step(self.evaluate)

    def row(self, ms_eval: float, ms_step: float, peak: float) -> dict[str, object]:
        self.evaluate()
        # parameters the loss depends on (pykan also holds its unused symbolic branch's affine parameters)
        n_params = sum(p.numel() for p in self.model.parameters() if p.grad is not None)
        return {"model": self.name, "family": self.family, "n_params": n_params, "n_points": self.problem.n_interior,
                "dtype": str(self.dtype).removeprefix("torch."), "backend": self.backend,
                "ms_eval": ms_eval, "ms_step": ms_step, "peak_mem_mb": peak}


def ratio(rows: list[dict], a: tuple[str, str], b: tuple[str, str], n: int, dtype: str) -> float:
    """ms_eval of (model, backend) ``a`` over that of ``b`` at (n, dtype); NaN if either is missing."""
    def pick(key: tuple[str, str]) -> float | None:
        return next((r["ms_eval"] for r in rows if (r["model"], r["backend"]) == key and r["n_points"] == n and r["dtype"] == dtype), None)
    x, y = pick(a), pick(b)
    return x / y if x is not None and y is not None else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1k and 10k in float32 only (about a minute on 2 cores)")
    parser.add_argument("--n", type=int, nargs="+", help="collocation point counts (default 1000 10000 100000)")
    parser.add_argument("--dtype", nargs="+", choices=["float32", "float64"], help="default: float32 float64")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (median; at least 20 by default)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile", action="store_true", help="add rows with the forward back end under torch.compile")
    parser.add_argument("--out", type=Path, default=Path("bench_speed.csv"), help="CSV file for the table")
    parser.add_argument("--grids", type=int, nargs="+", default=[5],
                        help="KAN grid sizes: the full table at the first, one kernel row more per further grid (e.g. 5 200)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be positive, got {args.repeats}")
    ns = args.n or ([1000, 10000] if args.quick else [1000, 10000, 100000])
    dtypes = args.dtype or (["float32"] if args.quick else ["float32", "float64"])
    if any(n < 1 for n in ns):
        parser.error(f"--n values must be positive, got {ns}")
    if any(g < 1 for g in args.grids):
        parser.error(f"--grids values must be positive, got {args.grids}")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")

    kan_cfg = {"width": [2, 10, 1], "grid": args.grids[0], "k": 3}
    n_kan = KAN(**kan_cfg).n_params()
    w = equal_mlp_width(n_kan)
    g0 = args.grids[0]
    kan_name, eq_name, big_name, py_name = f"KAN[2,10,1] G={g0}", f"MLP[2,{w},{w},1]", "MLP[2,100,100,100,1]", f"pykan KAN[2,10,1] G={g0}"
    free_name = f"KAN[2,10,1] G={g0} free knots"
    notes = []
    have_pykan = pykan_model(**kan_cfg) is not None
    if not have_pykan:
        notes.append("pykan is not installed: its rows are skipped (pip install -e \".[bench]\")")
    print(f"kanpde bench_speed: {device} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
          f"N = {ns}, dtypes = {dtypes}, median of {args.repeats}", flush=True)
    if device.type == "cpu":
        built = {d: native.library(getattr(torch, d)) is not None for d in dtypes}
        print(f"KAN layer kernel (kanpde/models/layer_jet.c): {', '.join(f'{d} ' + ('built' if ok else 'unavailable') for d, ok in built.items())}; "
              "'forward' rows use it where built, 'forward-torchops' rows the torch operations", flush=True)
        if not all(built.values()):
            notes.append("the KAN layer kernel could not be built: 'forward' and 'forward-torchops' rows both use torch operations")
    else:
        usable = {d: triton_jet.usable(getattr(torch, d)) for d in dtypes}
        print(f"KAN layer kernel on {torch.cuda.get_device_name(device)} (Triton, kanpde/models/triton_kernels.py): "
              f"{', '.join(f'{d} ' + ('usable' if ok else 'unavailable') for d, ok in usable.items())}; "
              "'forward' rows use it where usable, 'forward-torchops' rows the torch operations", flush=True)
        if not all(usable.values()):
            notes.append("Triton is not usable here (pip install triton): 'forward' and 'forward-torchops' rows both use torch operations")

    rows: list[dict] = []
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        for n in ns:
            problem = Poisson2D(n_interior=n, n_boundary=max(4, (800 * n) // 10000))
            points = {t: {k: v.to(device=device, dtype=dtype) for k, v in p.items()} for t, p in problem.sample_points(0).items()}
            torch.manual_seed(0)
            cases: list[tuple[str, str, Callable[[], nn.Module], str]] = [
                (kan_name, "kan", lambda: KAN(**kan_cfg, bounds=BOUNDS), "forward"),
                (kan_name, "kan", lambda: KAN(**kan_cfg, bounds=BOUNDS), "forward-torchops"),
                (free_name, "kan", lambda: free_knot_kan(kan_cfg), "forward"),
                (kan_name, "kan", lambda: KAN(**kan_cfg, bounds=BOUNDS), "autograd"),
                (eq_name, "mlp", lambda: MLP([2, w, w, 1], bounds=BOUNDS), "forward"),
                (eq_name, "mlp", lambda: MLP([2, w, w, 1], bounds=BOUNDS), "autograd"),
                (big_name, "mlp", lambda: MLP([2, 100, 100, 100, 1], bounds=BOUNDS), "forward"),
                (big_name, "mlp", lambda: MLP([2, 100, 100, 100, 1], bounds=BOUNDS), "autograd"),
            ]
            for g in args.grids[1:]:
                cases.append((f"KAN[2,10,1] G={g}", "kan", lambda g=g: KAN(**{**kan_cfg, "grid": g}, bounds=BOUNDS), "forward"))
            if have_pykan:
                cases.append((py_name, "pykan", lambda: pykan_model(**kan_cfg, device=device), "autograd"))
            if args.compile:
                for name, family, make in [(kan_name, "kan", lambda: KAN(**kan_cfg, bounds=BOUNDS)),
                                           (eq_name, "mlp", lambda: MLP([2, w, w, 1], bounds=BOUNDS))]:
                    cases.append((name, family, make, "forward+compile"))
            built = []
            for name, family, make, backend in cases:
                torch.manual_seed(0)
                model = make()
                if backend == "forward+compile":
                    model.forward_jet = torch.compile(type(model).forward_jet.__get__(model))
                built.append(Case(name, family, model, backend.removesuffix("+compile").removesuffix("-torchops"), problem, points,
                                  dtype, device, kernel=backend in ("forward", "forward+compile")))
            ms_eval = interleaved_medians([c.evaluate for c in built], args.repeats, device)
            peaks = [peak_memory_mb(c.evaluate, device) for c in built]
            ms_step = interleaved_medians([c.step for c in built], max(3, args.repeats // 4), device, warmup=0)
            for (name, _, _, backend), case, e, st, pk in zip(cases, built, ms_eval, ms_step, peaks):
                row = case.row(e, st, pk)
                row["backend"] = backend
                rows.append(row)
                print(f"  {name:<24} {backend:<16} N={n:<7} {dtype_name}: eval {e:9.2f} ms  step {st:9.2f} ms  "
                      f"peak {pk:8.1f} MiB", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    tmp.replace(args.out)

    print()
    print(f"| {' | '.join(COLUMNS)} |")
    print(f"|{'---|' * len(COLUMNS)}")
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in COLUMNS) + " |")
    print()
    print("ms_eval ratios: KAN [2,10,1] with the forward back end, time divided by that of ...; (e): free knots over uniform")
    print("| N | dtype | (a) KAN autograd | (b) " + eq_name + " | (c) " + big_name + " | (d) pykan | (e) free knots |")
    print("|---|---|---|---|---|---|---|")
    kan_fast = (kan_name, "forward")
    for dtype_name in dtypes:
        for n in ns:
            a = ratio(rows, kan_fast, (kan_name, "autograd"), n, dtype_name)
            b = ratio(rows, kan_fast, (eq_name, "forward"), n, dtype_name)
            c = ratio(rows, kan_fast, (big_name, "forward"), n, dtype_name)
            d = ratio(rows, kan_fast, (py_name, "autograd"), n, dtype_name)
            e = ratio(rows, (free_name, "forward"), kan_fast, n, dtype_name)
            print(f"| {n} | {dtype_name} | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} | {e:.2f} |")
    if len(args.grids) > 1:
        print()
        print(f"ms_eval of the KAN [2,10,1] with the forward back end at each grid, divided by that at G = {g0}:")
        print("| N | dtype | " + " | ".join(f"G = {g}" for g in args.grids[1:]) + " |")
        print("|---|---|" + "---|" * (len(args.grids) - 1))
        for dtype_name in dtypes:
            for n in ns:
                cells = [ratio(rows, (f"KAN[2,10,1] G={g}", "forward"), kan_fast, n, dtype_name) for g in args.grids[1:]]
                print(f"| {n} | {dtype_name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
