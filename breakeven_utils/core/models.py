"""The papers' models, one plain constructor each, and a registry by name.

* SimpleCNN: break-even App. D / sharpest-directions App. F (the Keras example):
  conv 32, 32, max-pool, conv 64, 64, max-pool, dense 128, 10; 3x3 'same'
  convolutions, ReLU. ``bn=True`` puts BatchNorm after every layer but the last
  (SimpleCNN-BN, break-even Sec. 4.3); ``width``/``kernel_size`` give the wider
  NSGD variant (100 filters instead of 64, 5x5 kernels; sharpest-directions
  footnote 10).
* CIFAR ResNet-32/56 (He et al. 2015, Sec. 4.2: 3 stages of n basic blocks,
  16/32/64 channels, identity shortcuts with zero padding, "option A").
  Without BatchNorm the residual branches are depth-scaled at initialisation
  (the sharpest-directions paper removes BN and follows Taki 2017).
* VGG-11 with a 10-class head, with or without BatchNorm.
* MLP 784-300-100-10 with ReLU (break-even App. D, Fashion-MNIST).
* LSTM classifier: embedding, one 100-unit LSTM, linear head (break-even App. D, IMDB).

Initialisation: the break-even and sharpest-directions experiments ran in
Keras, whose default is Glorot-uniform kernels and zero biases; PyTorch's
default gives SimpleCNN weights about 1.7x smaller and much slower early
training at small learning rates (``../shared/papers/README.md``). ``init``
selects ``'keras'`` (the default for the Keras-built models) or ``'torch'``
(PyTorch's defaults); ResNets default to He initialisation as in He et al.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["MODELS", "SimpleCNN", "CifarResNet", "VGG", "MLP", "LSTMClassifier",
           "build_model", "keras_init_", "count_parameters"]

INITS = ("keras", "torch", "he")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters D."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def keras_init_(model: nn.Module) -> nn.Module:
    """Keras defaults: Glorot-uniform kernels, zero biases, BN gamma=1 beta=0;
    LSTM: Glorot-uniform input kernels, orthogonal recurrent kernels, zero
    biases with forget-gate bias 1 (``unit_forget_bias``); embeddings U(-0.05, 0.05)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.uniform_(m.weight, -0.05, 0.05)
        elif isinstance(m, nn.LSTM):
            for name, p in m.named_parameters():
                if name.startswith("weight_ih"):
                    for chunk in p.data.chunk(4, 0):  # gates i, f, g, o
                        nn.init.xavier_uniform_(chunk)
                elif name.startswith("weight_hh"):
                    for chunk in p.data.chunk(4, 0):
                        nn.init.orthogonal_(chunk)
                elif name.startswith("bias"):
                    nn.init.zeros_(p)
                    if name.startswith("bias_ih"):
                        p.data.chunk(4, 0)[1].fill_(1.0)
    return model


# ----------------------------------------------------------------------------- SimpleCNN


class SimpleCNN(nn.Module):
    """SimpleCNN of the break-even (App. D) and sharpest-directions (App. F) papers."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                 width: tuple[int, int, int, int] = (32, 32, 64, 64), hidden: int = 128,
                 kernel_size: int = 3, bn: bool = False):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 poolings), got {image_size}")
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(width):
            layers.append(nn.Conv2d(c, w, kernel_size, padding=kernel_size // 2))
            if bn:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.ReLU())
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(c * (image_size // 4) ** 2, hidden)]
        if bn:
            head.append(nn.BatchNorm1d(hidden))
        head += [nn.ReLU(), nn.Linear(hidden, num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


# ----------------------------------------------------------------------------- ResNet


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, bn: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not bn)
        self.bn2 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.pad = c_out - c_in
        self.stride = stride

    def shortcut(self, x):
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2) of He et al. (2015, Sec. 4.2), option-A shortcuts."""

    def __init__(self, depth: int = 32, num_classes: int = 10, in_channels: int = 3,
                 bn: bool = True):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=not bn)
        self.bn = nn.BatchNorm2d(16) if bn else nn.Identity()
        blocks, c = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(_BasicBlock(c, width, 2 if (stage > 0 and i == 0) else 1, bn))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        self.has_bn = bn

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def he_init_(model: nn.Module) -> nn.Module:
    """He-normal (fan-out) convolutions, zero biases, BN gamma=1 beta=0 (He et al. 2015).

    For a :class:`CifarResNet` without BatchNorm the last convolution of every
    residual branch is further scaled by ``L**-0.5`` (L residual blocks), the
    depth scaling of Taki (2017) that the sharpest-directions paper uses when it
    removes BN, so the forward signal's variance stays bounded in depth.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if isinstance(model, CifarResNet) and not model.has_bn:
        scale = len(model.blocks) ** -0.5
        with torch.no_grad():
            for block in model.blocks:
                block.conv2.weight.mul_(scale)
    return model


# ----------------------------------------------------------------------------- VGG

_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """VGG-11 (Simonyan & Zisserman 2014) for 32x32 inputs, final layers adapted to
    ``num_classes`` (sharpest-directions Sec. 3)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, bn: bool = False,
                 cfg: tuple = _VGG11):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(c, v, 3, padding=1))
            if bn:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU())
            c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# ----------------------------------------------------------------------------- MLP, LSTM


class MLP(nn.Module):
    """Multi-layer perceptron 784-300-100-10 with ReLU (break-even App. D); flattens its input."""

    def __init__(self, in_features: int = 784, hidden: tuple[int, ...] = (300, 100),
                 num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class LSTMClassifier(nn.Module):
    """Embedding, one LSTM layer (100 units), linear head on the last hidden state
    (break-even App. D: IMDB, vocabulary 20,000, sequences of 80 tokens)."""

    def __init__(self, vocab_size: int = 20_000, embed_dim: int = 128, hidden: int = 100,
                 num_classes: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, tokens):
        _, (h, _) = self.lstm(self.embedding(tokens))
        return self.fc(h[-1])


# ----------------------------------------------------------------------------- registry


def _image_kw(kw, num_classes, in_channels, image_size):
    return dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size, **kw)


MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    # name: (constructor taking (num_classes, in_channels, image_size, **kw), default init)
    "simple_cnn": (lambda nc, ic, sz, **kw: SimpleCNN(**_image_kw(kw, nc, ic, sz)), "keras"),
    "simple_cnn_bn": (lambda nc, ic, sz, **kw: SimpleCNN(**_image_kw(kw, nc, ic, sz), bn=True), "keras"),
    "simple_cnn_wide": (lambda nc, ic, sz, **kw: SimpleCNN(
        **_image_kw({"width": (32, 32, 100, 100), "kernel_size": 5, **kw}, nc, ic, sz)), "keras"),
    "resnet32": (lambda nc, ic, sz, **kw: CifarResNet(32, nc, ic, **kw), "he"),
    "resnet56": (lambda nc, ic, sz, **kw: CifarResNet(56, nc, ic, **kw), "he"),
    "vgg11": (lambda nc, ic, sz, **kw: VGG(nc, ic, bn=False, **kw), "he"),
    "vgg11_bn": (lambda nc, ic, sz, **kw: VGG(nc, ic, bn=True, **kw), "he"),
    "mlp": (lambda nc, ic, sz, **kw: MLP(kw.pop("in_features", ic * sz * sz), num_classes=nc, **kw),
            "keras"),
    "lstm": (lambda nc, ic, sz, **kw: LSTMClassifier(num_classes=nc, **kw), "keras"),
}


def build_model(name: str, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32,
                init: str | None = None, seed: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model; ``seed`` fixes the initialisation.

    ``init=None`` uses the model's default: ``'keras'`` for the models the papers
    built in Keras (SimpleCNN, MLP, LSTM), ``'he'`` for ResNets and VGG;
    ``'torch'`` keeps PyTorch's own defaults.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    ctor, default_init = MODELS[name]
    init = default_init if init is None else init
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; valid: {', '.join(INITS)}")
    # built and initialised on the host from the CPU RNG, so that a seed gives the same
    # weights on every device; the caller moves the model (``recorder.loop.build_run_model``)
    if seed is None:
        with torch.device("cpu"):
            return _init(ctor(num_classes, in_channels, image_size, **kwargs), init)
    with torch.random.fork_rng(devices=[]), torch.device("cpu"):  # leave the global RNG as it was
        torch.manual_seed(seed)
        return _init(ctor(num_classes, in_channels, image_size, **kwargs), init)


def _init(model: nn.Module, init: str) -> nn.Module:
    if init == "keras":
        keras_init_(model)
    elif init == "he":
        he_init_(model)
    return model
