"""Input embeddings between a model's normalisation and its first layer: exact periodicity, Fourier features.

* **Periodic** (Dong & Ni 2021): a periodic input h on [lo, hi] is replaced by cos(kω(h − lo)),
  sin(kω(h − lo)) for k = 1..modes, ω = 2π/(hi − lo).  Every function of these features, and so
  the network's output with all its input derivatives, is periodic in that input for any weights:
  the periodic boundary condition holds exactly and its loss term drops out.
* **Fourier features** (Tancik et al. 2020; Wang, Wang & Perdikaris 2021 for PINNs): chosen inputs
  h_S also feed cos(2π B h_S), sin(2π B h_S) with B: (features, |S|) drawn from N(0, scale²) once
  (a buffer, saved with the model), which lets a network fit high frequencies in those inputs.

Every trigonometric feature is one column of a linear map followed by a sine (cos is a phase
shift), and every feature is mapped into the normalised range [lo, hi], so a KAN's first-layer grid
covers it.  The forward derivative pass (:mod:`kanpde.models.jet`) goes through the same two steps.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from kanpde import checks
from kanpde.models.jet import Jet


def _axes(name: str, value: Any, n_in: int) -> list[int]:
    axes = [checks.positive_int(f"{name}[{i}]", a, minimum=0) for i, a in enumerate(value)]
    bad = [a for a in axes if a >= n_in]
    if bad or len(set(axes)) != len(axes):
        raise ValueError(f"{name} must be distinct input indices below {n_in}, got {list(value)}")
    return axes


class InputEmbedding(nn.Module):
    """Features of the normalised inputs h: (batch, n_in) -> (batch, n_out), inputs kept first.

    Args:
        n_in: number of inputs.
        periodic: ``{axis: modes}``: these inputs are replaced by ``modes`` cosine/sine pairs each,
            periodic with the length of the normalised range.
        fourier: ``{"inputs": [axes], "features": m, "scale": sigma, "seed": s}``: m random Fourier
            feature pairs of these inputs (kept as well, unless periodic).
        target: the normalised range ``(lo, hi)`` the inputs lie in and the features are mapped into.

    ``n_out`` is the number of features the first layer sees.  With neither option this is the identity.
    """

    def __init__(self, n_in: int, periodic: Mapping[Any, int] | None = None, fourier: Mapping[str, Any] | None = None,
                 target: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__()
        self.n_in = checks.positive_int("n_in", n_in)
        self.target = (float(target[0]), float(target[1]))
        periodic = {int(a): checks.positive_int(f"embedding.periodic[{a}]", m) for a, m in dict(periodic or {}).items()}
        _axes("embedding.periodic", list(periodic), self.n_in)
        self.periodic = dict(sorted(periodic.items()))
        self.fourier = self._check_fourier(fourier)
        tables = self._tables()
        self.n_out = int(tables["weight"].shape[1])
        for name, value in tables.items():  # not saved: the settings rebuild them exactly (model files stay as they were)
            self.register_buffer(name, value.to(torch.get_default_dtype()) if value.is_floating_point() else value, persistent=False)

    def _tables(self) -> dict[str, torch.Tensor]:
        """The linear map (weight, phase), which columns take a sine (trig) and the map onto the range
        (scale, shift), computed in float64 from the settings."""
        lo, hi = self.target
        keep = [a for a in range(self.n_in) if a not in self.periodic]
        f64 = torch.float64
        columns: list[torch.Tensor] = [torch.eye(self.n_in, dtype=f64)[:, keep]]
        phases: list[torch.Tensor] = [torch.zeros(len(keep), dtype=f64)]
        omega = 2 * math.pi / (hi - lo)
        for axis, modes in self.periodic.items():
            w = torch.zeros(self.n_in, 2 * modes, dtype=f64)
            k = torch.arange(1, modes + 1, dtype=f64).repeat(2)
            w[axis] = k * omega
            columns.append(w)
            phases.append(-k * omega * lo + torch.cat([torch.full((modes,), math.pi / 2, dtype=f64), torch.zeros(modes, dtype=f64)]))
        if self.fourier is not None:
            f = self.fourier
            B = torch.randn(f["features"], len(f["inputs"]), generator=torch.Generator().manual_seed(f["seed"]), dtype=f64) * f["scale"]
            w = torch.zeros(self.n_in, 2 * f["features"], dtype=f64)
            w[f["inputs"]] = 2 * math.pi * B.T.repeat(1, 2)
            columns.append(w)
            phases.append(torch.cat([torch.full((f["features"],), math.pi / 2, dtype=f64), torch.zeros(f["features"], dtype=f64)]))
        weight = torch.cat(columns, dim=1)
        trig = torch.arange(weight.shape[1]) >= len(keep)
        half = (hi - lo) / 2
        # sin ∈ [-1, 1] goes onto [lo, hi]; kept inputs are already there
        return {"weight": weight, "phase": torch.cat(phases), "trig": trig,
                "scale": torch.where(trig, half, 1.0).to(f64), "shift": torch.where(trig, lo + half, 0.0).to(f64)}

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        """After a cast (``.double()``, ``.to(dtype)``) the tables are recomputed in float64 and rounded
        once, so a model built in float32 and cast to float64 is periodic to float64's round-off."""
        out = super()._apply(fn, recurse)
        dtype, device = self.weight.dtype, self.weight.device
        for name, value in self._tables().items():
            setattr(self, name, value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype))
        return out

    def _check_fourier(self, fourier: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if not fourier:
            return None
        unknown = set(fourier) - {"inputs", "features", "scale", "seed"}
        if unknown:
            raise ValueError(f"embedding.fourier takes inputs, features, scale and seed; got unknown key(s) {sorted(unknown)}")
        if "inputs" not in fourier:
            raise ValueError("embedding.fourier.inputs is missing: name the inputs that get Fourier features")
        inputs = _axes("embedding.fourier.inputs", list(fourier["inputs"]), self.n_in)
        if not inputs:
            raise ValueError("embedding.fourier.inputs is empty: name at least one input")
        return {"inputs": inputs, "features": checks.positive_int("embedding.fourier.features", fourier.get("features", 16)),
                "scale": checks.positive_float("embedding.fourier.scale", fourier.get("scale", 1.0)),
                "seed": checks.positive_int("embedding.fourier.seed", fourier.get("seed", 0), minimum=0)}

    @property
    def active(self) -> bool:
        """Whether the embedding changes anything (else the model skips it)."""
        return bool(self.periodic) or self.fourier is not None

    def spec(self) -> dict[str, Any] | None:
        """The constructor's ``periodic``/``fourier`` as plain values (None when inactive), for a model's ``config()``."""
        if not self.active:
            return None
        return {"periodic": dict(self.periodic), "fourier": None if self.fourier is None else dict(self.fourier)}

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (batch, n_in) -> (batch, n_out)."""
        z = torch.addmm(self.phase, h, self.weight)
        return torch.where(self.trig, torch.sin(z), z) * self.scale + self.shift

    def forward_jet(self, jet: Jet) -> Jet:
        """The features as a jet: a linear map, then sine on the trigonometric columns."""
        z = jet.linear(self.weight, self.phase)
        s = torch.sin(z.value)
        c = torch.cos(z.value)
        one, zero = torch.ones_like(s), torch.zeros_like(s)
        out = z.elementwise(torch.where(self.trig, s, z.value), torch.where(self.trig, c, one),
                            torch.where(self.trig, -s, zero) if jet.pairs else None)
        return out.affine(self.scale, self.shift)


def embedding_from(n_in: int, spec: Mapping[str, Any] | None, target: tuple[float, float]) -> InputEmbedding:
    """An :class:`InputEmbedding` from a model's ``embedding`` argument ``{"periodic": ..., "fourier": ...}``
    (None or empty: the identity); an unknown key fails, naming it."""
    spec = dict(spec or {})
    unknown = set(spec) - {"periodic", "fourier"}
    if unknown:
        raise ValueError(f"embedding takes periodic and fourier, got unknown key(s) {sorted(unknown)}")
    return InputEmbedding(n_in, spec.get("periodic"), spec.get("fourier"), target)
