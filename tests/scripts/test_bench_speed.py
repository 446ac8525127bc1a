"""scripts/bench_speed.py: its table and CSV, and training memory linear in the number of points."""
import csv

import pytest
import torch

from kanpde import KAN
from kanpde.problems.poisson import Poisson2D
from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_speed")


def test_equal_mlp_width_matches_the_kan_parameter_count(bench):
    n_kan = KAN([2, 10, 1], grid=5, k=3).n_params()
    w = bench.equal_mlp_width(n_kan)
    n_mlp = 3 * w + w * w + w + w + 1
    assert abs(n_mlp - n_kan) <= min(abs(3 * v + v * v + v + v + 1 - n_kan) for v in (w - 1, w + 1))
    assert (w, n_kan, n_mlp) == (15, 300, 301)


@pytest.mark.slow
def test_small_run_writes_every_row_with_the_columns(bench, tmp_path, capsys):
    out = tmp_path / "b.csv"
    assert bench.main(["--n", "64", "128", "--dtype", "float64", "--repeats", "2", "--device", "cpu", "--out", str(out)]) == 0
    with out.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == bench.COLUMNS
        rows = list(reader)
    has_pykan = bench.pykan_model([2, 10, 1], 5, 3) is not None
    assert len(rows) == 2 * (8 + has_pykan)
    assert {(r["model"], r["backend"]) for r in rows} >= {("KAN[2,10,1] G=5", "forward"), ("KAN[2,10,1] G=5", "autograd"),
                                                           ("KAN[2,10,1] G=5", "forward-torchops"),
                                                           ("KAN[2,10,1] G=5 free knots", "forward"),
                                                           ("MLP[2,15,15,1]", "forward"), ("MLP[2,100,100,100,1]", "autograd")}
    for r in rows:
        assert r["n_points"] in ("64", "128") and r["dtype"] == "float64"
        assert float(r["ms_eval"]) > 0 and float(r["ms_step"]) > 0 and float(r["peak_mem_mb"]) > 0
    kan = [r for r in rows if r["family"] == "kan"]
    assert all(r["n_params"] == "300" for r in kan)
    printed = capsys.readouterr().out
    assert "(a) KAN autograd" in printed and "(e) free knots" in printed and "wrote" in printed
    if not has_pykan:
        assert "pykan is not installed" in printed
    assert not list(tmp_path.glob("*.tmp"))


def test_without_pykan_its_rows_are_skipped_with_a_note(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "pykan_model", lambda *args, **kwargs: None)
    out = tmp_path / "b.csv"
    assert bench.main(["--n", "32", "--dtype", "float32", "--repeats", "1", "--device", "cpu", "--grids", "5", "7",
                       "--out", str(out)]) == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and not any(r["family"] == "pykan" for r in rows)
    assert [r["n_params"] for r in rows if r["model"] == "KAN[2,10,1] G=7"] == ["360"]  # (7 + 3 + 2) per edge
    printed = capsys.readouterr().out
    assert "pykan is not installed: its rows are skipped" in printed and "divided by that at G = 5" in printed


def test_bad_arguments_are_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    with pytest.raises(SystemExit):
        bench.main(["--n", "0"])


def test_training_memory_grows_linearly_in_the_points(bench):
    """Peak memory of one loss+gradient evaluation (forward back end) at 4x the points is 4x (within 15%)."""
    peaks = []
    for n in (2000, 8000):
        problem = Poisson2D(n_interior=n, n_boundary=n // 10)
        points = {t: {k: v.double() for k, v in p.items()} for t, p in problem.sample_points(0).items()}
        torch.manual_seed(0)
        case = bench.Case("kan", "kan", KAN([2, 10, 1], grid=5, bounds=bench.BOUNDS), "forward", problem, points,
                          torch.float64, torch.device("cpu"))
        case.evaluate()
        peaks.append(bench.peak_memory_mb(case.evaluate, torch.device("cpu")))
    assert 4 * 0.85 <= peaks[1] / peaks[0] <= 4 * 1.15, peaks


@pytest.mark.slow
def test_errors_on_a_million_points_need_one_chunk_of_memory(bench):
    """metrics.errors evaluates in chunks: 10^6 points peak at about the memory of one 65,536-point chunk."""
    from kanpde.pde.metrics import errors

    problem = Poisson2D()
    torch.manual_seed(0)
    model = KAN([2, 10, 1], grid=5, bounds=bench.BOUNDS).double()
    x = 2 * torch.rand(1_000_000, 2, dtype=torch.float64) - 1
    cpu = torch.device("cpu")
    one_chunk = bench.peak_memory_mb(lambda: errors(model, problem.exact, x[:65536]), cpu)
    full = bench.peak_memory_mb(lambda: errors(model, problem.exact, x), cpu)
    assert full <= 1.2 * one_chunk, (full, one_chunk)


def test_the_gpu_check_refuses_a_machine_without_cuda_before_measuring_anything(tmp_path):
    """scripts/gpu_check.sh, the GPU measurements in one command: without CUDA it says so and writes nothing else."""
    import subprocess
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the script would measure it")
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
    proc = subprocess.run(["bash", str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr
    assert list((tmp_path / "out").iterdir()) == []
