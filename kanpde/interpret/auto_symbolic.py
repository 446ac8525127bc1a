"""Turning a trained KAN's edges into closed forms: fit every numeric edge, keep the best form."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from kanpde.models.functions import LIBRARY, function
from kanpde.models.kan import KAN
from kanpde.interpret.fit import SymbolicFit, choose, fit_library
from kanpde.interpret.network import kan_of


@dataclass(frozen=True)
class EdgeForm(SymbolicFit):
    """A symbolic fit placed on edge ``i -> o`` of ``layer``; r2 is that of its fit to the edge's numeric
    function (nan for an edge fixed by hand)."""

    layer: int
    i: int
    o: int


def check_library(names: Sequence[str] | None) -> list[str]:
    """The library names to fit (default: all), each checked: an unknown one fails with its name."""
    names = list(LIBRARY) if names is None else list(names)
    for n in names:
        function(n)
    return names


def cancels(fit: SymbolicFit, x: np.ndarray, y: np.ndarray, limit: float) -> bool:
    """Whether the fit's two terms c·f(a·x + b) and d cancel: |c·f| reaching more than ``limit`` times max |y|.

    Such fits imitate a different curve with a sliver of f (a sine near its crest passes for a
    parabola, with huge c and d of opposite signs); they are never the edge's true form."""
    with np.errstate(all="ignore"):
        part = np.abs(fit.c * function(fit.name).numpy(fit.a * x + fit.b))
    return bool(part.max() > limit * max(float(np.abs(y).max()), 1e-300))


@torch.no_grad()
def auto_symbolic(model: KAN, x: torch.Tensor, library: Sequence[str] | None = None, complexity_penalty: float = 1.0,
                  r2_min: float = 0.0, n_fit: int = 300, max_cancellation: float = 10.0) -> list[EdgeForm]:
    """Fit every numeric edge of ``model`` (in place) to the library and fix it to the chosen form.

    Each edge is fitted on the inputs it sees for (up to ``n_fit`` of) the samples x: (batch, width[0]),
    layer by layer with the layers below as they are by then, against the numeric function it
    computes there.  Fits with R² <= 0 and fits whose terms cancel (:func:`cancels`, ``max_cancellation``) are set aside
    unless nothing else fits; :func:`kanpde.interpret.fit.choose` picks among the rest (R² against
    complexity).  An edge whose chosen R² is below ``r2_min`` stays numeric.  Returns the forms fixed.
    The model has new parameters afterwards: rebuild the optimiser.
    """
    names = check_library(library)
    net = kan_of(model)
    if x.shape[0] > n_fit:  # fitting cost grows with the samples; a few hundred pin a 1-D curve down
        x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:n_fit].to(x.device)]
    forms = []
    h = net.normalize(x)
    for l, layer in enumerate(net.layers):
        acts = layer.edges(h, 0)[0]
        for i in range(layer.in_features):
            for o in range(layer.out_features):
                if layer.edge_kind(i, o) != "numeric":
                    continue
                hi, yi = h[:, i].cpu().double().numpy(), acts[:, i, o].cpu().double().numpy()
                fits = fit_library(hi, yi, names)
                # a fit with R² <= 0 explains nothing (the "0" edge always scores so: that is pruning's call)
                useful = [f for f in fits if f.r2 > 0] or fits
                clean = [f for f in useful if not cancels(f, hi, yi, max_cancellation)]
                fit = choose(clean or useful, complexity_penalty)
                if not fit.r2 >= r2_min:
                    continue
                layer.fix_symbolic(i, o, fit.name, (fit.a, fit.b, fit.c, fit.d))
                forms.append(EdgeForm(fit.name, fit.a, fit.b, fit.c, fit.d, fit.r2, layer=l, i=i, o=o))
        h = layer(h)
    return forms


def edge_forms(model: KAN, fitted: Sequence[EdgeForm] = ()) -> list[EdgeForm]:
    """Every symbolic edge of ``model`` with its current (a, b, c, d) and the R² it was ``fitted`` with."""
    r2 = {(f.layer, f.i, f.o): f.r2 for f in fitted}
    net = kan_of(model)
    rows = []
    for l, layer in enumerate(net.layers):
        if layer.symbolic is None:
            continue
        p = layer.symbolic.params().detach().cpu().tolist()
        for i, o, name in layer.symbolic.edges():
            rows.append(EdgeForm(name, *p[i][o], r2.get((l, i, o), float("nan")), layer=l, i=i, o=o))
    return rows
