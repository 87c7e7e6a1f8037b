"""Data sets as in-memory tensors, with the papers' splits and a fast batch iterator.

Every data set is loaded whole into memory (uint8 on disk in a decoded cache,
normalised float32 on the target device) and cut into deterministic subsets:

* ``train`` / ``val``: the papers hold out part of the training set for
  validation (CIFAR-10: 45k/5k, as in the authors' code, so that one epoch of
  batch 100 is 450 iterations); the split is fixed (seed 0), the subsets of
  size ``n_train`` / ``n_val`` are seeded prefixes of a permutation of each part,
  so a smaller subset is contained in a larger one;
* ``measure``: the fixed subset of ``train`` on which curvature is measured
  (the papers use about 5% of the training set, break-even App. C);
* ``test``: the original test set (or a seeded subset of it).

Sources, searched in this order under the data root (argument, else the
environment variable ``BREAKEVEN_DATA``, else ``~/.cache/breakeven_utils``):
torchvision's original release, the JPEG copy in ImageFolder layout
(``cifar10-jpeg/{train,test}/<class>/*.jpg``), and a download through
torchvision when allowed. A decoded uint8 cache (``<root>/breakeven_cache``)
makes every load after the first one fast.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torchvision.datasets as tvd

from breakeven_utils.core.device import resolve_device
from breakeven_utils.core.io import atomic_write

with warnings.catch_warnings():  # torchvision 0.29 deprecates io in favour of torchcodec
    warnings.simplefilter("ignore", DeprecationWarning)
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

__all__ = [
    "DATASETS",
    "Data",
    "DataNotFoundError",
    "Split",
    "BatchIterator",
    "augment_batch",
    "data_root",
    "load_data",
]


class DataNotFoundError(FileNotFoundError):
    """The data set is in none of the places searched and cannot be downloaded."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the loader needs to know about one data set."""

    title: str
    num_classes: int
    n_train_total: int  # size of the original training set
    n_val_default: int  # held out from it for validation
    mean: tuple[float, ...]
    std: tuple[float, ...]
    offline: str  # where the files go, for error messages


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "CIFAR-10", 10, 50_000, 5_000,
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        "<root>/cifar-10-batches-py (torchvision) or <root>/cifar10-jpeg/{train,test} (JPEG copy)",
    ),
    "cifar100": DatasetInfo(
        "CIFAR-100", 100, 50_000, 5_000,
        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
        "<root>/cifar-100-python (torchvision)",
    ),
    "fashion_mnist": DatasetInfo(
        "Fashion-MNIST", 10, 60_000, 5_000, (0.2860,), (0.3530,),
        "<root>/FashionMNIST/raw/*-ubyte (torchvision)",
    ),
    "mnist": DatasetInfo(
        "MNIST", 10, 60_000, 5_000, (0.1307,), (0.3081,),
        "<root>/MNIST/raw/*-ubyte (torchvision)",
    ),
    "synthetic": DatasetInfo(
        "synthetic 3x8x8 images", 10, 4_096, 512, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
        "(generated, no files)",
    ),
}

NORMALIZATIONS = ("standard", "unit")


@dataclass(frozen=True)
class Split:
    """One part of a data set: inputs ``x`` (float32, normalised) and labels ``y`` (int64)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: the form the estimators take as ``data``."""
        return self.x, self.y


@dataclass(frozen=True)
class Data:
    """A loaded data set: train/val/test/measure splits and where they came from."""

    name: str
    source: str  # 'torchvision' | 'jpeg' | 'synthetic'
    label: str  # for figures, e.g. "CIFAR-10, JPEG copy"
    num_classes: int
    train: Split
    val: Split
    test: Split
    measure: Split
    root: str | None = None
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- roots


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$BREAKEVEN_DATA``, else ``~/.cache/breakeven_utils``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("BREAKEVEN_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "breakeven_utils"


# ----------------------------------------------------------------------------- raw readers
# Each reader returns uint8 arrays (N, C, H, W) and int64 labels for train and test,
# or None when its files are not there.


def _read_torchvision(name: str, root: Path, download: bool):
    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100,
           "fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST}[name]
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        return None

    def arrays(ds):
        x = np.asarray(ds.data)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # NHWC -> NCHW
        return np.ascontiguousarray(x, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)

    return (*arrays(train), *arrays(test))


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def _read_jpeg_folder(folder: Path):
    """Decode an ImageFolder tree of JPEGs in batches with torchvision.io."""
    with warnings.catch_warnings():  # torchvision 0.29 deprecates io in favour of torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if set(classes) == set(CIFAR10_CLASSES):
            classes = list(CIFAR10_CLASSES)  # the standard CIFAR-10 label order
        files, labels = [], []
        for label, c in enumerate(classes):
            names = sorted((folder / c).glob("*.jpg"))
            files += names
            labels += [label] * len(names)
        images = []
        for start in range(0, len(files), 4096):
            raw = [read_file(str(f)) for f in files[start:start + 4096]]
            images += decode_jpeg(raw, mode=ImageReadMode.RGB)
    x = torch.stack(images).numpy()
    return np.ascontiguousarray(x, dtype=np.uint8), np.asarray(labels, dtype=np.int64)


def _read_jpeg(name: str, root: Path):
    base = root / f"{name.replace('_', '')}-jpeg"
    if not ((base / "train").is_dir() and (base / "test").is_dir()):
        return None
    return (*_read_jpeg_folder(base / "train"), *_read_jpeg_folder(base / "test"))


def _synthetic(seed: int = 1234, n_train: int = 4096, n_test: int = 1024):
    """Ten classes of 3x8x8 images: a fixed random prototype per class plus noise.

    Learnable but not trivially (noise std comparable to the prototype spread),
    small enough to train in a second: for tests and the smoke profile.
    """
    # drawn on the host (device="cpu" throughout): the arrays are stored as numpy
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 3, 8, 8, generator=g, device="cpu")

    def draw(n):
        y = torch.arange(n, device="cpu") % 10
        y = y[torch.randperm(n, generator=g, device="cpu")]
        x = protos[y] + 0.35 * torch.randn(n, 3, 8, 8, generator=g, device="cpu")
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), y.numpy().astype(np.int64)

    return (*draw(n_train), *draw(n_test))


# ----------------------------------------------------------------------------- cache


def _cache_path(root: Path, name: str, source: str) -> Path:
    return root / "breakeven_cache" / f"{name}-{source}.npz"


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _write_cache(path: Path, arrays) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, train_x=arrays[0], train_y=arrays[1], test_x=arrays[2],
                     test_y=arrays[3], sha256=np.array(_digest(arrays)))
    atomic_write(path, write)


def _read_cache(path: Path):
    try:
        with np.load(path) as z:
            arrays = (z["train_x"], z["train_y"], z["test_x"], z["test_y"])
            stored = str(z["sha256"])
    except Exception as exc:  # truncated zip, missing member, bad header ...
        raise RuntimeError(
            f"the decoded data cache {path} is corrupt ({type(exc).__name__}: {exc}); "
            f"delete it and it will be rebuilt from the source files"
        ) from exc
    if _digest(arrays) != stored:
        raise RuntimeError(
            f"the decoded data cache {path} fails its checksum; delete it and it "
            f"will be rebuilt from the source files"
        )
    return arrays


def _load_raw(name: str, root: Path, download: bool | None):
    """Find the data set under ``root``; returns (arrays, source)."""
    if name == "synthetic":
        return _synthetic(), "synthetic"
    searched = []
    for source in ("torchvision", "jpeg"):
        cached = _cache_path(root, name, source)
        if cached.exists():
            return _read_cache(cached), source
    arrays = _read_torchvision(name, root, download=False)
    searched.append(f"{root} (torchvision layout)")
    source = "torchvision"
    if arrays is None and name == "cifar10":
        arrays, source = _read_jpeg(name, root), "jpeg"
        searched.append(f"{root / 'cifar10-jpeg'} (JPEG copy, ImageFolder layout)")
    if arrays is None and download is not False:
        try:
            arrays, source = _read_torchvision(name, root, download=True), "torchvision"
        except Exception as exc:  # offline: URLError, socket errors, ...
            searched.append(f"download through torchvision failed ({type(exc).__name__})")
    if arrays is None:
        info = DATASETS[name]
        raise DataNotFoundError(
            f"{info.title} was not found. Searched: " + "; ".join(searched) + ". "
            f"Put the files at {info.offline.replace('<root>', str(root))}, or point the "
            f"data root elsewhere with load_data(..., root=...) or BREAKEVEN_DATA=<dir>, or "
            f"allow a download (download=True, needs internet). On the project's machines: "
            f"bash ../shared/data/unpack.sh <dir> && export BREAKEVEN_DATA=<dir>."
        )
    try:
        _write_cache(_cache_path(root, name, source), arrays)
    except OSError:
        pass  # a read-only root still works, just without the cache
    return arrays, source


# ----------------------------------------------------------------------------- splits


def _permutation(n: int, seed: int) -> torch.Tensor:
    # a seeded host draw: the same split on every device
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed), device="cpu")


def _check_size(what: str, n: int | None, available: int) -> int:
    if n is None:
        return available
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    if n > available:
        raise ValueError(f"{what}={n} but only {available} examples are available")
    return int(n)


def load_data(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    n_measure: int | None = None,
    seed: int = 0,
    normalize: str = "standard",
    device: str | torch.device = "cpu",
    download: bool | None = None,
) -> Data:
    """Load a data set whole into memory and cut the papers' splits.

    ``n_val`` examples are held out of the original training set (default: the
    papers' split, 5k for CIFAR-10), ``n_train`` are drawn from the rest and
    ``n_measure`` (default 5% of ``n_train``) are the first ``n_measure`` of the
    training subset. ``normalize='standard'`` subtracts the per-channel mean and
    divides by the std (standard CIFAR preprocessing); ``'unit'`` scales to
    [0, 1] (the Keras examples the papers built on). ``download=None`` tries a
    torchvision download only when no local copy is found.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names: {', '.join(DATASETS)}")
    device = resolve_device(device)  # 'auto': CUDA when present, else CPU
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize={normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
    info = DATASETS[name]
    n_val_total = info.n_val_default
    # size checks before any I/O
    n_val = _check_size("n_val", n_val, n_val_total)
    n_train = _check_size("n_train", n_train, info.n_train_total - n_val_total)
    n_measure = _check_size("n_measure", n_measure if n_measure is not None
                            else max(1, math.ceil(0.05 * n_train)), n_train)

    root_path = data_root(root)
    (train_x, train_y, test_x, test_y), source = _load_raw(name, root_path, download)
    if len(train_x) != info.n_train_total:
        raise RuntimeError(f"{name}: expected {info.n_train_total} training images, "
                           f"found {len(train_x)} under {root_path}")
    n_test = _check_size("n_test", n_test, len(test_x))

    # fixed train/val split (seed 0, as the papers' one split), seeded subsets of each part
    split = _permutation(info.n_train_total, 0).numpy()
    pool, held_out = split[: info.n_train_total - n_val_total], split[info.n_train_total - n_val_total:]
    tr = pool[_permutation(len(pool), seed).numpy()[:n_train]]
    va = held_out[_permutation(len(held_out), seed + 1).numpy()[:n_val]]
    te = _permutation(len(test_x), seed + 2).numpy()[:n_test] if n_test < len(test_x) \
        else np.arange(len(test_x))

    mean = torch.tensor(info.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def to_split(x, y, idx):
        xt = torch.from_numpy(np.ascontiguousarray(x[idx])).to(device).float().div_(255)
        if normalize == "standard":
            xt = (xt - mean) / std
        return Split(xt, torch.from_numpy(np.ascontiguousarray(y[idx])).to(device))

    train = to_split(train_x, train_y, tr)
    label = info.title + {"jpeg": ", JPEG copy", "synthetic": ""}.get(source, "")
    return Data(
        name=name, source=source, label=label, num_classes=info.num_classes,
        train=train, val=to_split(train_x, train_y, va), test=to_split(test_x, test_y, te),
        measure=Split(train.x[:n_measure], train.y[:n_measure]),
        root=None if source == "synthetic" else str(root_path),
        extra={"normalize": normalize, "seed": seed},
    )


# ----------------------------------------------------------------------------- batches


def augment_batch(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """The papers' standard augmentation: random crop with zero padding 4 and a
    horizontal flip with probability 1/2, vectorised over the batch."""
    b, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (padding,) * 4)
    # drawn on the host from the epoch's seeded CPU generator (the same crops on every
    # device), then moved to the batch's device
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device="cpu").to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device="cpu").to(x.device)
    flip = (torch.rand(b, generator=generator, device="cpu") < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)  # b x h
    cols = ox[:, None] + torch.arange(w, device=x.device)  # b x w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]]  # b x h x w x c
    return out.permute(0, 3, 1, 2).contiguous()


class BatchIterator:
    """Mini-batches over an in-memory :class:`Split`, deterministic in ``(seed, epoch)``.

    ``epoch(e)`` draws the permutation (and the augmentation) of epoch ``e`` from
    a generator seeded by ``(seed, e)``, so a run that is resumed at epoch ``e``
    sees exactly the batches an uninterrupted run would. Indexing is one gather
    per batch: no per-sample Python work.
    """

    def __init__(self, split: Split, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 augment: bool = False, drop_last: bool = True):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size > len(split):
            raise ValueError(f"batch_size={batch_size} is larger than the {len(split)} examples")
        if augment and split.x.dim() != 4:
            raise ValueError("augmentation needs image inputs (N x C x H x W)")
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, e: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # the epoch's order and augmentation are host draws from a seeded CPU generator (the
        # same batches on every device); the order is then moved to the data's device
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
        n = len(self.split)
        order = (torch.randperm(n, generator=g, device="cpu") if self.shuffle
                 else torch.arange(n, device="cpu"))
        order = order.to(self.split.x.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x, y = self.split.x[idx], self.split.y[idx]
            if self.augment:
                x = augment_batch(x, g)
            yield x, y

    def __iter__(self):
        return self.epoch(0)
