"""results.h5 and model.pt: round trips, atomic writes, loading on the CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from kanpde import KAN, MLP
from kanpde.io import atomic_path, load_model, read_results, save_model, write_results


def test_results_round_trip(tmp_path):
    x = torch.rand(50, 2, dtype=torch.float64)
    attrs = {"problem": "poisson2d", "model": "KAN[2, 10, 1]", "family": "kan", "status": "ok", "n_params": 750, "rel_l2": 1.5e-4,
             "config": "a: 1\n", "width": [2, 10, 1], "skipped": None}
    history = {"step": [0, 10, 20], "loss": [1.0, 0.1, 0.01]}
    path = write_results(tmp_path / "results.h5", attrs, history, {"x": x, "u_pred": x[:, :1] * 2, "u_exact": None})
    back = read_results(path)
    assert back["attrs"]["problem"] == "poisson2d"
    assert back["attrs"]["n_params"] == 750
    assert back["attrs"]["rel_l2"] == pytest.approx(1.5e-4, rel=0, abs=0)
    assert back["attrs"]["config"] == "a: 1\n"
    assert list(back["attrs"]["width"]) == [2, 10, 1]
    assert "skipped" not in back["attrs"]
    assert back["attrs"]["schema_version"] == 2 and back["attrs"]["dtype"] == ""  # unwritten fields read as the schema's defaults
    np.testing.assert_array_equal(back["history"]["loss"], [1.0, 0.1, 0.01])
    np.testing.assert_array_equal(back["eval"]["x"], x.numpy())
    np.testing.assert_array_equal(back["eval"]["u_pred"], 2 * x[:, :1].numpy())
    assert "u_exact" not in back["eval"]
    assert [p.name for p in tmp_path.iterdir()] == ["results.h5"]  # no temporary left behind


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "results.h5"
    with pytest.raises(TypeError):
        write_results(target, {"problem": "p", "model": "m", "family": "kan", "status": "ok", "n_params": 1, "bad": object()}, {}, {})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_read_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        read_results(tmp_path / "nothere.h5")
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_model(tmp_path / "model.pt")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kan_checkpoint_reproduces_outputs_after_grid_changes(tmp_path, dtype):
    torch.manual_seed(0)
    model = KAN([2, 4, 1], grid=5, k=3, bounds=([0.0, -2.0], [1.0, 2.0])).to(dtype)
    x = torch.rand(64, 2, dtype=dtype) * torch.tensor([1.0, 4.0], dtype=dtype) - torch.tensor([0.0, 2.0], dtype=dtype)
    model.update_grid(x)
    model.extend_grid(9)
    path = save_model(tmp_path / "model.pt", model)
    loaded = load_model(path)
    assert loaded.grid == 9 and loaded.width == [2, 4, 1]
    assert next(loaded.parameters()).dtype == dtype
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_mlp_checkpoint(tmp_path):
    torch.manual_seed(1)
    model = MLP([3, 8, 8, 2], activation="sin", bounds=([0, 0, 0], [1, 2, 3]))
    x = torch.rand(10, 3)
    loaded = load_model(save_model(tmp_path / "m.pt", model))
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_results_without_the_required_attributes_are_refused(tmp_path):
    from kanpde.io.results import SchemaError

    with pytest.raises(SchemaError, match="family"):
        write_results(tmp_path / "results.h5", {"problem": "p", "model": "m", "status": "ok", "n_params": 1}, {}, {})
    assert list(tmp_path.iterdir()) == []


class Opaque:
    """An arbitrary object: unpickling it would import and run this module."""


def test_model_files_load_without_running_code(tmp_path):
    """model.pt holds tensors and plain values: it loads with torch's safe loader, and a file that would
    run code (a pickled object) or name something other than a model class is refused."""
    from kanpde.models import KAN

    path = save_model(tmp_path / "model.pt", KAN([1, 2, 1]))
    assert isinstance(load_model(path), KAN)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "config": {"width": Opaque()}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="loads safely"):
        load_model(tmp_path / "bad.pt")
    torch.save({**payload, "class": "os.system"}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a torch module class"):
        load_model(tmp_path / "foreign.pt")
