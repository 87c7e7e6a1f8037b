import math

import pytest
import torch
from torch import nn

from breakeven_utils.core.models import MODELS, build_model, count_parameters


def _input(name):
    if name == "mlp":
        return torch.randn(3, 1, 28, 28), dict(in_channels=1, image_size=28)
    if name == "lstm":
        return torch.randint(0, 20_000, (3, 80)), dict(num_classes=2)
    return torch.randn(3, 3, 32, 32), {}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape_and_seeded_init(name):
    x, kw = _input(name)
    a, b = build_model(name, seed=0, **kw), build_model(name, seed=0, **kw)
    c = build_model(name, seed=1, **kw)
    a.eval()
    out = a(x)
    assert out.shape == (3, kw.get("num_classes", 10)) and torch.isfinite(out).all()
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_simple_cnn_matches_the_papers_architecture():
    m = build_model("simple_cnn")
    convs = [m_ for m_ in m.modules() if isinstance(m_, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m_, nn.MaxPool2d) for m_ in m.modules()) == 2
    dense = [m_ for m_ in m.modules() if isinstance(m_, nn.Linear)]
    assert [d.out_features for d in dense] == [128, 10]
    expected = (3 * 32 * 9 + 32) + (32 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 64 * 9 + 64) \
        + (64 * 8 * 8 * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(m) == expected
    wide = build_model("simple_cnn_wide")
    assert [c.out_channels for c in wide.modules() if isinstance(c, nn.Conv2d)] == [32, 32, 100, 100]
    assert all(c.kernel_size == (5, 5) for c in wide.modules() if isinstance(c, nn.Conv2d))


@pytest.mark.parametrize("name,published", [("resnet32", 0.46e6), ("resnet56", 0.85e6)])
def test_resnet_parameter_counts_match_he_et_al(name, published):
    assert abs(count_parameters(build_model(name)) - published) / published < 0.02


def test_mlp_is_784_300_100_10():
    m = build_model("mlp", in_channels=1, image_size=28)
    assert [m_.weight.shape for m_ in m.modules() if isinstance(m_, nn.Linear)] == \
        [(300, 784), (100, 300), (10, 100)]


@pytest.mark.parametrize("name,bn", [("simple_cnn", False), ("simple_cnn_bn", True),
                                     ("vgg11", False), ("vgg11_bn", True)])
def test_bn_toggle(name, bn):
    has = any(isinstance(m_, (nn.BatchNorm1d, nn.BatchNorm2d)) for m_ in build_model(name).modules())
    assert has == bn
    assert not any(isinstance(m_, nn.BatchNorm2d) for m_ in build_model("resnet32", bn=False).modules())


def test_keras_init_is_glorot_uniform_with_zero_bias():
    m = build_model("simple_cnn", seed=0)
    for layer in m.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            w = layer.weight
            fan_in = w[0].numel()
            fan_out = w.shape[0] * w[0, 0].numel()
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
            assert torch.all(layer.bias == 0)
    torch_default = build_model("simple_cnn", init="torch", seed=0)
    assert any(m_.bias.abs().sum() > 0 for m_ in torch_default.modules() if isinstance(m_, nn.Linear))


def test_resnet_without_bn_is_depth_scaled():
    x = torch.randn(16, 3, 32, 32)
    out = build_model("resnet56", bn=False, seed=0)(x)
    assert torch.isfinite(out).all() and out.std() < 100


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="simple_cnn"):
        build_model("alexnet")
    with pytest.raises(ValueError, match="keras"):
        build_model("mlp", init="lecun")
