"""Input embeddings (kanpde.models.embedding): exact periodicity, Fourier features, derivatives through them."""
from __future__ import annotations

import math

import pytest
import torch

from kanpde import KAN, MLP, Fields
from kanpde.models import native
from kanpde.models.embedding import InputEmbedding, embedding_from
from test_jet import both_backends, rel_diff

F64 = torch.float64
SPEC = {"periodic": {0: 2}, "fourier": {"inputs": [1], "features": 3, "scale": 1.5, "seed": 4}}


def models(spec, bounds=([-1.0, 0.0], [3.0, 2.0])):
    torch.manual_seed(3)
    yield KAN([2, 4, 3, 1], grid=5, k=3, init_scale=0.5, bounds=bounds, embedding=spec).double()
    torch.manual_seed(3)
    yield MLP([2, 8, 8, 1], activation="tanh", bounds=bounds, embedding=spec).double()


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "torch-ops"])
def test_forward_derivatives_through_embeddings_match_nested_autograd(kernel):
    x = torch.rand(150, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * torch.tensor([4.0, 2.0], dtype=F64) + torch.tensor([-1.0, 0.0], dtype=F64)
    for model in models(SPEC):
        with native.switched(kernel):
            res = both_backends(model, x, 1)
        (va, ga), (vb, gb) = res["forward"], res["autograd"]
        assert rel_diff(va, vb) <= 1e-10, type(model).__name__
        for a, b in zip(ga, gb):
            assert rel_diff(a, b) <= 1e-10, type(model).__name__


def test_periodic_embedding_makes_the_solution_and_its_derivatives_periodic_for_any_weights():
    t = torch.linspace(0.0, 2.0, 7, dtype=F64)
    left = torch.stack([torch.full_like(t, -1.0), t], dim=1)
    right = torch.stack([torch.full_like(t, 3.0), t], dim=1)
    for model in models(SPEC):
        for seed in range(3):  # any weights: scramble them
            torch.manual_seed(seed)
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(torch.randn_like(p))
            parts = []
            for x in (left, right):
                f = Fields(model, x, ("x", "t"), ("u",), "forward")
                parts.append(torch.stack([f["u"], f.d("u", "x"), f.d("u", "t"), f.d("u", "x", "x"), f.d("u", "x", "t")]).detach())
            scale = parts[0].abs().max()
            assert float((parts[0] - parts[1]).abs().max() / scale) < 1e-12, type(model).__name__
    # without the embedding the same model is not periodic
    plain = KAN([2, 4, 1], bounds=([-1.0, 0.0], [3.0, 2.0])).double()
    assert float((plain(left) - plain(right)).abs().max()) > 1e-3


def test_features_lie_in_the_normalised_range_and_keep_the_other_inputs():
    emb = InputEmbedding(3, {1: 2}, {"inputs": [0, 2], "features": 4, "scale": 3.0}, target=(-2.0, 5.0))
    h = torch.rand(500, 3, dtype=F64) * 7 - 2
    z = emb.to(F64)(h)
    assert z.shape == (500, 2 + 4 + 8) and emb.n_out == 14
    torch.testing.assert_close(z[:, :2], h[:, [0, 2]], rtol=0, atol=0)  # kept inputs, untouched
    assert float(z.min()) >= -2.0 - 1e-12 and float(z.max()) <= 5.0 + 1e-12
    # the periodic pairs are cos and sin of k·2π(h - lo)/(hi - lo), mapped onto [lo, hi]
    angle = 2 * math.pi * (h[:, 1] + 2.0) / 7.0
    torch.testing.assert_close((z[:, 2] - 1.5) / 3.5, torch.cos(angle), rtol=0, atol=1e-13)
    torch.testing.assert_close((z[:, 5] - 1.5) / 3.5, torch.sin(2 * angle), rtol=0, atol=1e-13)


def test_no_embedding_is_the_plain_model_exactly():
    x = torch.rand(20, 2, dtype=F64)
    for cls, width in ((KAN, [2, 5, 1]), (MLP, [2, 6, 1])):
        torch.manual_seed(0)
        plain = cls(width).double()
        torch.manual_seed(0)
        empty = cls(width, embedding={}).double()
        torch.testing.assert_close(plain(x), empty(x), rtol=0, atol=0)
        assert not empty.embedding.active and empty.config()["embedding"] is None


def test_a_model_with_an_embedding_rebuilds_from_its_config():
    for model in models(SPEC):
        again = type(model)(**model.config()).double()
        again.load_state_dict(model.state_dict())
        x = torch.rand(10, 2, dtype=F64)
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("spec,message", [
    ({"periodic": {2: 1}}, r"embedding.periodic must be distinct input indices below 2"),
    ({"periodic": {0: 0}}, r"embedding.periodic\[0\]"),
    ({"fourier": {"features": 4}}, r"embedding.fourier.inputs is missing"),
    ({"fourier": {"inputs": [0], "sigma": 1}}, r"unknown key\(s\) \['sigma'\]"),
    ({"fourier": {"inputs": [0], "scale": -1}}, r"embedding.fourier.scale"),
    ({"periodc": {0: 1}}, r"embedding takes periodic and fourier"),
])
def test_bad_embeddings_name_the_field(spec, message):
    with pytest.raises(ValueError, match=message):
        embedding_from(2, spec, (-1.0, 1.0))
