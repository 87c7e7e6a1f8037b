"""Where tensors live: ``device="auto"`` (CUDA when present, else CPU) and the
``BREAKEVEN_DEVICE`` environment variable that ``make reproduce DEVICE=...`` sets.

Every entry point that trains or measures (``store.runs.run`` / ``store.sweeps.sweep``,
``recorder.loop.train``, the notebooks) accepts ``"auto"``, ``"cpu"``, ``"cuda"``,
``"cuda:N"`` or a ``torch.device``; :func:`resolve_device` turns the name into a
concrete device once, before any compute, and fails clearly when CUDA is asked
for but absent. The estimators follow the model's device, so they need no
argument.

:func:`device_discipline` checks that code keeps to this (issue 22): under it a tensor
created without an explicit device, or an operation that mixes devices, is an error.
A tensor kept on the host on purpose (a seeded ``torch.Generator`` draw, the Lanczos
tridiagonal, float64 accumulators of scalars) says ``device="cpu"`` where it is made.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

__all__ = ["ENV_VAR", "resolve_device", "device_from_env", "device_label", "to_tensor",
           "DeviceDisciplineError", "device_discipline"]

ENV_VAR = "BREAKEVEN_DEVICE"


def resolve_device(device=None) -> str:
    """``'auto'``/None -> ``'cuda'`` when ``torch.cuda.is_available()``, else ``'cpu'``;
    ``'cpu'``, ``'cuda'``, ``'cuda:N'`` (or a ``torch.device``) are checked and returned
    as a string. Unknown names and an absent GPU raise ``ValueError``."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = str(device).strip().lower()
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from e
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise ValueError(f"device {device!r} is not supported here; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA device "
                         f"(torch {torch.__version__}); use device='auto' or 'cpu'")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return str(dev)


def device_from_env(default: str = "auto") -> str:
    """The device a notebook should use: ``$BREAKEVEN_DEVICE`` (set by ``make reproduce
    DEVICE=...``), else ``default``, resolved by :func:`resolve_device`."""
    return resolve_device(os.environ.get(ENV_VAR) or default)


def device_label(device=None) -> str:
    """A human label: 'cpu (2 threads)' or 'cuda:0 (NVIDIA A100-SXM4-40GB)'."""
    dev = resolve_device(device)
    if dev == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    idx = torch.device(dev).index or 0
    return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"


def to_tensor(x, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` as a tensor: a tensor keeps its device (``torch.as_tensor`` would move it to the
    default device where one is set), anything else (numpy arrays, lists) goes to the host."""
    if isinstance(x, torch.Tensor):
        return x if dtype is None else x.to(dtype)
    return torch.as_tensor(x, dtype=dtype, device="cpu")


class DeviceDisciplineError(RuntimeError):
    """A tensor made without an explicit device, or an operation across devices."""


# operations whose purpose is to move a tensor between devices, or to read it to the host
_TRANSFERS = frozenset({
    torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.copy_,
    torch.Tensor.numpy, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__array__,
    torch.Tensor.__format__, torch.Tensor.__repr__, torch.Tensor.__float__, torch.Tensor.__int__,
    torch.Tensor.__bool__, torch.Tensor.__index__, torch.Tensor.device.__get__,
})


class _DeviceGuard(TorchFunctionMode):
    """Checks every torch call: no tensor in its arguments or result on ``meta`` (where
    :func:`device_discipline` sends a tensor made without a device), and no call other than
    a transfer whose tensor arguments lie on more than one device."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", None) or repr(func)
        inputs = {t.device for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        self.check(name, inputs)
        if func not in _TRANSFERS and len(inputs) > 1:
            raise DeviceDisciplineError(
                f"torch.{name} mixes tensors on {sorted(map(str, inputs))}: move one explicitly")
        out = func(*args, **kwargs)
        self.check(name, {t.device for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)})
        return out

    @staticmethod
    def check(name: str, devices: set) -> None:
        if any(d.type == "meta" for d in devices):
            raise DeviceDisciplineError(
                f"torch.{name} made or met a tensor without an explicit device (it landed on "
                "'meta', the default device under device_discipline): pass device= (the run's "
                "device, or device='cpu' where the host is meant)")


@contextmanager
def device_discipline():
    """Within: every tensor created without an explicit ``device=`` lands on ``meta`` (the
    default device is set to it) and any torch call that meets such a tensor, or mixes
    tensors of two devices other than to move one (``.to``, ``.cpu``, ``copy_``, ``.item``,
    ...), raises :class:`DeviceDisciplineError` naming the call. Run a run or an estimator
    under it on the CPU to prove it would keep every tensor on a GPU (issue 22, item 2)."""
    with torch.device("meta"), _DeviceGuard():
        yield
