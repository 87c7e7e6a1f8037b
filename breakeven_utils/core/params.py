"""Flat views of a model's parameters and small vector utilities.

The curvature and noise estimators work on the flat parameter vector theta in
R^D (D = number of trainable parameters, in ``model.parameters()`` order).
These helpers convert between that vector and per-parameter tensors without
copying more than needed: ``unflatten`` returns views into the flat vector,
``set_parameters_vector`` copies in place, ``cosine``/``distance`` reduce
without materialising intermediate copies of the parameters.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = [
    "trainable_parameters",
    "num_parameters",
    "flatten",
    "unflatten",
    "parameters_vector",
    "set_parameters_vector",
    "gradient_vector",
    "cosine",
    "distance",
    "parameter_norm",
    "weight_spectral_norms",
]


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs with ``requires_grad``, in ``named_parameters`` order.

    This order defines the layout of every flat vector in this package.
    """
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def num_parameters(model: nn.Module) -> int:
    """D, the number of trainable parameters."""
    return sum(p.numel() for _, p in trainable_parameters(model))


def flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector (a single copy)."""
    tensors = [t.reshape(-1) for t in tensors]
    if not tensors:
        raise ValueError("flatten: no tensors given")
    return torch.cat(tensors)


def unflatten(vec: torch.Tensor, like: Sequence[torch.Tensor] | nn.Module) -> list[torch.Tensor]:
    """Split a flat vector into views shaped like ``like`` (tensors or a model's
    trainable parameters). No copy: the results share storage with ``vec``."""
    if isinstance(like, nn.Module):
        like = [p for _, p in trainable_parameters(like)]
    total = sum(t.numel() for t in like)
    if vec.dim() != 1 or vec.numel() != total:
        raise ValueError(f"unflatten: vector of shape {tuple(vec.shape)} does not match "
                         f"{total} elements")
    out, offset = [], 0
    for t in like:
        n = t.numel()
        out.append(vec[offset:offset + n].view(t.shape))
        offset += n
    return out


def parameters_vector(model: nn.Module) -> torch.Tensor:
    """theta as a detached flat vector (a copy: later training does not alter it)."""
    return flatten(p.detach() for _, p in trainable_parameters(model))


@torch.no_grad()
def set_parameters_vector(model: nn.Module, vec: torch.Tensor) -> None:
    """Copy a flat vector into the model's trainable parameters, in place."""
    params = [p for _, p in trainable_parameters(model)]
    for p, v in zip(params, unflatten(vec.to(params[0].device), params)):
        p.copy_(v)


def gradient_vector(model: nn.Module) -> torch.Tensor:
    """The ``.grad`` fields as one flat vector (zeros for parameters without a grad)."""
    return flatten(p.grad.detach() if p.grad is not None else torch.zeros_like(p)
                   for _, p in trainable_parameters(model))


def _as_vector(x: nn.Module | torch.Tensor) -> torch.Tensor:
    if isinstance(x, nn.Module):
        return parameters_vector(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a model or a tensor, got {type(x).__name__}")
    return x.detach().reshape(-1)


def cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 0.0) -> float:
    """cos(a, b) = <a, b> / (||a|| ||b||) of two vectors (flattened)."""
    a, b = _as_vector(a), _as_vector(b)
    if a.numel() != b.numel():
        raise ValueError(f"cosine: sizes differ ({a.numel()} vs {b.numel()})")
    na, nb = torch.linalg.vector_norm(a), torch.linalg.vector_norm(b)
    if eps == 0.0 and (na == 0 or nb == 0):
        raise ValueError("cosine: zero vector")
    return float(torch.dot(a, b) / (na * nb + eps))


def distance(model_or_vec: nn.Module | torch.Tensor, theta0: nn.Module | torch.Tensor) -> float:
    """||theta - theta0||_2 between a model (or flat vector) and a reference."""
    a, b = _as_vector(model_or_vec), _as_vector(theta0)
    if a.numel() != b.numel():
        raise ValueError(f"distance: sizes differ ({a.numel()} vs {b.numel()})")
    return float(torch.linalg.vector_norm(a - b.to(a.device, a.dtype)))


def parameter_norm(model_or_vec: nn.Module | torch.Tensor) -> float:
    """||theta||_2, without building the flat vector for a model."""
    if isinstance(model_or_vec, nn.Module):
        sq = sum(float(p.detach().pow(2).sum()) for _, p in trainable_parameters(model_or_vec))
        return sq ** 0.5
    return float(torch.linalg.vector_norm(_as_vector(model_or_vec)))


@torch.no_grad()
def weight_spectral_norms(model: nn.Module) -> dict[str, float]:
    """Largest singular value of every weight matrix (NSGD table, Sec. 4).

    Each parameter named ``*weight`` with at least 2 dimensions is reshaped to
    (out, rest): a conv kernel out x in x kh x kw becomes out x (in*kh*kw).
    Biases and normalisation scales (1-D) are skipped.
    """
    out = {}
    for name, p in model.named_parameters():
        if p.dim() >= 2 and name.endswith("weight"):
            w = p.detach().reshape(p.shape[0], -1)
            out[name] = float(torch.linalg.matrix_norm(w, ord=2))
    return out
