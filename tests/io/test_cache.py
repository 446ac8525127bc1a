"""kanpde.io.cache: hits and misses, parameter keys, corrupt files, the KANPDE_CACHE directory."""
from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from kanpde.io import cache
from kanpde.io.cache import cache_dir, cache_path, cached_arrays, params_key


class Counter:
    """A compute() that counts its calls."""

    def __init__(self, scale: float = 1.0):
        self.calls = 0
        self.scale = scale

    def __call__(self):
        self.calls += 1
        return {"x": np.linspace(0, 1, 5) * self.scale, "n": np.arange(3, dtype=np.int32), "m": np.eye(2, dtype=np.float32)}


PARAMS = {"n": 5, "nu": 0.01 / np.pi, "method": "cole_hopf"}


def test_miss_then_hit(tmp_path):
    compute = Counter()
    first = cached_arrays("demo", PARAMS, compute, tmp_path)
    assert compute.calls == 1
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and re.fullmatch(r"demo-[0-9a-f]{16}\.h5", files[0].name)  # no temporary left behind
    assert files[0] == cache_path("demo", PARAMS, tmp_path)
    with h5py.File(files[0], "r") as f:
        assert f.attrs["n"] == 5 and f.attrs["nu"] == 0.01 / np.pi and f.attrs["method"] == "cole_hopf"
        assert sorted(f) == ["m", "n", "x"]
    second = cached_arrays("demo", dict(reversed(list(PARAMS.items()))), compute, tmp_path)  # order does not matter
    assert compute.calls == 1
    assert sorted(second) == sorted(first) == ["m", "n", "x"]
    for key in first:
        np.testing.assert_array_equal(second[key], first[key])
        assert second[key].dtype == first[key].dtype and second[key].shape == first[key].shape


def test_other_params_use_another_file(tmp_path):
    compute = Counter()
    a = cached_arrays("demo", PARAMS, compute, tmp_path)
    b = cached_arrays("demo", {**PARAMS, "n": 6}, Counter(2.0), tmp_path)
    assert compute.calls == 1
    np.testing.assert_array_equal(b["x"], 2 * a["x"])
    assert len(list(tmp_path.glob("demo-*.h5"))) == 2
    np.testing.assert_array_equal(cached_arrays("demo", PARAMS, compute, tmp_path)["x"], a["x"])  # the first still hits
    assert compute.calls == 1
    # the value's type is part of the key, and so is the name
    keys = {params_key({"a": 1}), params_key({"a": 1.0}), params_key({"a": "1"}), params_key({"a": np.int64(1)})}
    assert len(keys) == 3
    assert cache_path("one", PARAMS, tmp_path) != cache_path("two", PARAMS, tmp_path)


def test_corrupt_file_warns_and_recomputes(tmp_path):
    compute = Counter()
    path = cache_path("demo", PARAMS, tmp_path)
    path.write_bytes(b"not an HDF5 file")
    with pytest.warns(RuntimeWarning, match=re.escape(str(path))):
        out = cached_arrays("demo", PARAMS, compute, tmp_path)
    assert compute.calls == 1
    np.testing.assert_array_equal(out["x"], np.linspace(0, 1, 5))
    cached_arrays("demo", PARAMS, compute, tmp_path)  # rewritten: now a silent hit
    assert compute.calls == 1

    # truncated mid-file (an interrupted copy, say)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="unusable"):
        cached_arrays("demo", PARAMS, compute, tmp_path)
    assert compute.calls == 2


def test_file_with_other_params_or_no_arrays_is_not_trusted(tmp_path):
    compute = Counter()
    path = cache_path("demo", PARAMS, tmp_path)
    with h5py.File(path, "w") as f:  # what a hash collision, or a hand-copied file, would look like
        f.attrs.update({**PARAMS, "n": 7})
        f["x"] = np.zeros(5)
    with pytest.warns(RuntimeWarning, match="parameters"):
        out = cached_arrays("demo", PARAMS, compute, tmp_path)
    np.testing.assert_array_equal(out["x"], np.linspace(0, 1, 5))
    with h5py.File(path, "w") as f:
        f.attrs.update(PARAMS)
    with pytest.warns(RuntimeWarning, match="no arrays"):
        cached_arrays("demo", PARAMS, compute, tmp_path)
    with h5py.File(path, "w") as f:  # 5.0 stored where the int 5 is asked for
        f.attrs.update({**PARAMS, "n": 5.0})
        f["x"] = np.zeros(5)
    with pytest.warns(RuntimeWarning):
        cached_arrays("demo", PARAMS, compute, tmp_path)
    assert compute.calls == 3


def test_kanpde_cache_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("KANPDE_CACHE", str(tmp_path / "envcache"))
    assert cache_dir() == tmp_path / "envcache"
    compute = Counter()
    cached_arrays("demo", PARAMS, compute, None)
    assert [p.name for p in (tmp_path / "envcache").iterdir()] == [cache_path("demo", PARAMS).name]
    cached_arrays("demo", PARAMS, compute)
    assert compute.calls == 1
    # an explicit directory wins over the variable
    cached_arrays("demo", PARAMS, compute, tmp_path / "explicit")
    assert compute.calls == 2 and len(list((tmp_path / "explicit").iterdir())) == 1
    # unset (or empty): ~/.cache/kanpde, with HOME pointed away from the real one
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KANPDE_CACHE", "")
    assert cache_dir() == tmp_path / "home" / ".cache" / "kanpde"
    monkeypatch.delenv("KANPDE_CACHE")
    assert cache_dir() == tmp_path / "home" / ".cache" / "kanpde"


def test_directory_that_cannot_be_created_names_it(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the directory should go")
    compute = Counter()
    with pytest.raises(OSError, match=re.escape(str(blocker / "sub"))):
        cached_arrays("demo", PARAMS, compute, blocker / "sub")
    assert compute.calls == 0  # nothing computed for nothing


def test_unwritable_file_warns_and_returns_the_arrays(tmp_path, monkeypatch):
    def failing(path):
        raise OSError("disk full")

    monkeypatch.setattr(cache, "atomic_path", failing)
    with pytest.warns(RuntimeWarning, match="disk full"):
        out = cached_arrays("demo", PARAMS, Counter(), tmp_path)
    np.testing.assert_array_equal(out["x"], np.linspace(0, 1, 5))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "params, error",
    [({"flag": True}, TypeError), ({"v": [1, 2]}, TypeError), ({"v": float("nan")}, ValueError), ({"": 1}, TypeError), ([1], TypeError)],
)
def test_bad_params_are_refused(tmp_path, params, error):
    with pytest.raises(error):
        cached_arrays("demo", params, Counter(), tmp_path)


def test_bad_names_and_results_are_refused(tmp_path):
    for name in ["", "../escape", "a/b", ".hidden"]:
        with pytest.raises(ValueError, match="cache name"):
            cached_arrays(name, PARAMS, Counter(), tmp_path)
    with pytest.raises(TypeError, match="non-empty dict"):
        cached_arrays("demo", PARAMS, lambda: {}, tmp_path)
    with pytest.raises(TypeError, match="dtype"):
        cached_arrays("demo", PARAMS, lambda: {"s": np.array(["a", "b"], dtype=object)}, tmp_path)
    assert not any(Path(tmp_path).glob("*.h5"))
