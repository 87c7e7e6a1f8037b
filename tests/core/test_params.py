"""Flat-vector utilities (breakeven_utils.core.params)."""
import math

import pytest
import torch
from torch import nn

from breakeven_utils.core import params as P


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
                      nn.BatchNorm1d(5), nn.Linear(5, 3, bias=False))
    return m


def test_flatten_unflatten_roundtrip_and_views():
    m = _model()
    vec = P.parameters_vector(m)
    assert vec.numel() == P.num_parameters(m) == sum(p.numel() for p in m.parameters())
    parts = P.unflatten(vec, m)
    for part, (_, p) in zip(parts, P.trainable_parameters(m)):
        assert part.shape == p.shape and torch.equal(part, p.detach())
    # views share storage with the flat vector (no copy)
    parts[0][0, 0, 0, 0] = 123.0
    assert vec[0] == 123.0
    assert torch.equal(P.flatten(parts), vec)


def test_parameters_vector_is_a_copy_and_set_roundtrip():
    m = _model()
    vec = P.parameters_vector(m)
    new = torch.randn_like(vec)
    P.set_parameters_vector(m, new)
    assert not torch.equal(vec, new)              # the earlier vector did not follow
    assert torch.equal(P.parameters_vector(m), new)
    assert torch.equal(m[0].weight.detach().reshape(-1), new[: m[0].weight.numel()])


def test_trainable_only():
    m = _model()
    m[0].bias.requires_grad_(False)
    assert P.num_parameters(m) == sum(p.numel() for p in m.parameters()) - 4
    assert "0.bias" not in dict(P.trainable_parameters(m))


def test_gradient_vector():
    m = _model()
    x = torch.randn(8, 3, 6, 6)
    m(x).pow(2).mean().backward()
    m[-1].weight.grad = None                      # a parameter without grad -> zeros
    g = P.gradient_vector(m)
    expected = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel())
                          for p in m.parameters()])
    assert torch.equal(g, expected)
    assert g[-m[-1].weight.numel():].abs().sum() == 0 and g.abs().sum() > 0


def test_cosine_distance_norm():
    a = torch.tensor([1.0, 0.0, 0.0])
    b = torch.tensor([1.0, 1.0, 0.0])
    assert P.cosine(a, b) == pytest.approx(1 / math.sqrt(2))
    assert P.cosine(a, -a) == pytest.approx(-1.0)
    assert P.distance(a, b) == pytest.approx(1.0)
    m = _model()
    theta0 = P.parameters_vector(m)
    assert P.distance(m, theta0) == 0.0
    with torch.no_grad():
        m[0].weight[0, 0, 0, 0] += 3.0
    assert P.distance(m, theta0) == pytest.approx(3.0)
    assert P.parameter_norm(m) == pytest.approx(float(P.parameters_vector(m).norm()), rel=1e-6)
    assert P.parameter_norm(b) == pytest.approx(math.sqrt(2))


def test_weight_spectral_norms():
    m = _model()
    norms = P.weight_spectral_norms(m)
    assert set(norms) == {"0.weight", "3.weight", "5.weight"}   # 1-D (bias, BN) skipped
    w = m[0].weight.detach()
    assert norms["0.weight"] == pytest.approx(float(torch.linalg.svdvals(w.reshape(4, 27))[0]), rel=1e-6)
    w = m[3].weight.detach()
    assert norms["3.weight"] == pytest.approx(float(torch.linalg.svdvals(w)[0]), rel=1e-6)


def test_bad_inputs():
    m = _model()
    with pytest.raises(ValueError):
        P.unflatten(torch.zeros(3), m)
    with pytest.raises(ValueError):
        P.cosine(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError):
        P.cosine(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError):
        P.distance(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError):
        P.flatten([])
