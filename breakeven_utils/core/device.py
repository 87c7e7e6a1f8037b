"""Where tensors live: ``device="auto"`` (CUDA when present, else CPU) and the
``BREAKEVEN_DEVICE`` environment variable that ``make reproduce DEVICE=...`` sets.

Every entry point that trains or measures (``store.runs.run`` / ``store.sweeps.sweep``,
``recorder.loop.train``, the notebooks) accepts ``"auto"``, ``"cpu"``, ``"cuda"``,
``"cuda:N"`` or a ``torch.device``; :func:`resolve_device` turns the name into a
concrete device once, before any compute, and fails clearly when CUDA is asked
for but absent. The estimators follow the model's device, so they need no
argument.
"""

from __future__ import annotations

import os

import torch

__all__ = ["ENV_VAR", "resolve_device", "device_from_env", "device_label"]

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
