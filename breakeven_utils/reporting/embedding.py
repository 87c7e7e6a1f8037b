"""2-D embedding of optimisation trajectories (break-even paper, Sec. 4.1, Fig. 1 and Fig. 8).

Following Erhan et al. (2010), every recorded model is represented by its
test-set softmax predictions; the flattened prediction vectors are embedded
in 2-D with UMAP (McInnes et al., 2018). The figure's background colours each
location by a quantity (lambda_K^1, training accuracy, ...) measured at the
trajectory point whose embedding is nearest in Euclidean distance.

Note: umap-learn JIT-compiles its graph construction with numba on the first
call in a process (about 10-15 s on 2 CPU cores); later calls are fast.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["embed_trajectories", "background_grid", "MIN_POINTS"]

#: UMAP's spectral initialisation needs more points than n_components + 1.
MIN_POINTS = 4


def _as_feature_matrix(predictions) -> np.ndarray:
    """(n_models, ...) predictions -> float32 matrix (n_models, n_features)."""
    if isinstance(predictions, (list, tuple)):
        if len(predictions) == 0:
            raise ValueError("predictions is empty: need one prediction array per recorded model")
        rows = [np.asarray(_to_numpy(p), dtype=np.float32).reshape(-1) for p in predictions]
        sizes = {r.size for r in rows}
        if len(sizes) != 1:
            raise ValueError(
                f"every recorded model needs predictions of the same size, got sizes {sorted(sizes)}"
            )
        x = np.stack(rows)
    else:
        x = np.asarray(_to_numpy(predictions), dtype=np.float32)
        if x.ndim < 2:
            raise ValueError(
                f"predictions must have shape (n_models, n_test[, n_classes]), got {x.shape}"
            )
        x = x.reshape(x.shape[0], -1)
    if x.shape[1] == 0:
        raise ValueError("predictions have no features (n_test * n_classes == 0)")
    if not np.all(np.isfinite(x)):
        bad = np.unique(np.nonzero(~np.isfinite(x))[0])
        raise ValueError(f"predictions contain NaN/inf for recorded models at rows {bad[:10].tolist()}")
    return x


def _to_numpy(a):
    """Accept torch tensors (any device) without importing torch here."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        return a.detach().cpu().numpy()
    return a


def embed_trajectories(predictions, *, n_neighbors: int = 15, min_dist: float = 0.1,
                       seed: int = 0) -> np.ndarray:
    """Embed recorded models in 2-D with UMAP from their test-set predictions (Fig. 1).

    predictions: array (n_models, n_test, n_classes) of softmax outputs (or any
    (n_models, ...) array / list of per-model arrays; each is flattened). Stack
    all runs (learning rates, seeds) into one call so they share the embedding.
    Returns float array (n_models, 2). Deterministic for a given seed on a
    given machine (UMAP then runs single-threaded).

    UMAP needs n_models > n_neighbors: a too large n_neighbors is clamped to
    n_models - 1 with a warning. At least MIN_POINTS models are required.
    """
    x = _as_feature_matrix(predictions)
    n = x.shape[0]
    if n < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} recorded models to embed, got {n}")
    if int(n_neighbors) != n_neighbors or n_neighbors < 2:
        raise ValueError(f"n_neighbors must be an integer >= 2, got {n_neighbors!r}")
    if not 0.0 <= min_dist:
        raise ValueError(f"min_dist must be >= 0, got {min_dist!r}")
    n_neighbors = int(n_neighbors)
    if n_neighbors >= n:
        warnings.warn(
            f"embed_trajectories: n_neighbors={n_neighbors} needs more than {n_neighbors} "
            f"recorded models, got {n}; using n_neighbors={n - 1}",
            UserWarning, stacklevel=2,
        )
        n_neighbors = n - 1

    with warnings.catch_warnings():  # heavy import (numba); tqdm complains without ipywidgets
        warnings.filterwarnings("ignore", message=".*IProgress not found.*")
        import umap  # noqa: PLC0415 -- heavy (numba compiles on import, seconds): only when an embedding is made

    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=float(min_dist),
                        metric="euclidean", random_state=int(seed), n_jobs=1)
    with warnings.catch_warnings():
        # umap warns about disconnected vertices for tiny inputs; the layout is still returned
        warnings.filterwarnings("ignore", message=".*disconnected.*", category=UserWarning)
        emb = reducer.fit_transform(x)
    return np.asarray(emb, dtype=np.float64)


def background_grid(points_2d, values, *, resolution: int = 200, margin: float = 0.05):
    """Nearest-neighbour background for the trajectory map (Fig. 1 / Fig. 8).

    Every cell of a resolution x resolution grid over the bounding box of
    points_2d (enlarged by margin times its extent on each side) takes the
    value of the trajectory point with the nearest embedding (Euclidean).
    Points whose value is NaN (quantity not measured at that model) are
    skipped, so the background uses only measured points.
    Returns (xx, yy, zz), each (resolution, resolution), rows along y.
    """
    pts = np.asarray(_to_numpy(points_2d), dtype=np.float64)
    vals = np.asarray(_to_numpy(values), dtype=np.float64).reshape(-1)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points_2d must have shape (n, 2), got {pts.shape}")
    if pts.shape[0] != vals.shape[0]:
        raise ValueError(f"points_2d has {pts.shape[0]} points but values has {vals.shape[0]}")
    if int(resolution) != resolution or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points_2d contains NaN/inf")
    keep = np.isfinite(vals)
    if not keep.any():
        raise ValueError("values has no finite entry: nothing to colour the background with")

    lo, hi = pts.min(axis=0), pts.max(axis=0)
    extent = hi - lo
    # degenerate direction (all points on a line): give it the other direction's extent or 1
    fallback = extent.max() if extent.max() > 0 else 1.0
    extent = np.where(extent > 0, extent, fallback)
    lo, hi = lo - margin * extent, hi + margin * extent
    xs = np.linspace(lo[0], hi[0], int(resolution))
    ys = np.linspace(lo[1], hi[1], int(resolution))
    xx, yy = np.meshgrid(xs, ys)

    tree = cKDTree(pts[keep])
    _, idx = tree.query(np.column_stack([xx.ravel(), yy.ravel()]), k=1)
    zz = vals[keep][idx].reshape(xx.shape)
    return xx, yy, zz
