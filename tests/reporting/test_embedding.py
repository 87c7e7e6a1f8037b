"""Trajectory embedding (break-even paper Fig. 1 / Fig. 8): UMAP + nearest-neighbour background."""

import numpy as np
import pytest

from breakeven_utils.reporting.embedding import MIN_POINTS, background_grid, embed_trajectories


def _brute_force(points, values, xx, yy):
    keep = np.isfinite(values)
    p, v = points[keep], values[keep]
    zz = np.empty_like(xx)
    for i in range(xx.shape[0]):
        for j in range(xx.shape[1]):
            d = (p[:, 0] - xx[i, j]) ** 2 + (p[:, 1] - yy[i, j]) ** 2
            zz[i, j] = v[np.argmin(d)]
    return zz


@pytest.mark.parametrize("seed", [0, 1])
def test_background_equals_brute_force_nearest_neighbour(seed):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(37, 2)) * [3.0, 0.5]
    vals = rng.random(37)
    vals[::5] = np.nan  # not measured at these models: never used for the background
    xx, yy, zz = background_grid(pts, vals, resolution=31, margin=0.1)
    assert xx.shape == yy.shape == zz.shape == (31, 31)
    np.testing.assert_array_equal(zz, _brute_force(pts, vals, xx, yy))
    assert np.all(np.isfinite(zz))
    # grid covers the points plus the margin
    ext = pts.max(0) - pts.min(0)
    assert xx.min() == pytest.approx(pts[:, 0].min() - 0.1 * ext[0])
    assert yy.max() == pytest.approx(pts[:, 1].max() + 0.1 * ext[1])


def test_background_degenerate_extent_and_bad_input():
    pts = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])  # all on a horizontal line
    xx, yy, zz = background_grid(pts, [1.0, 2.0, 3.0], resolution=5)
    assert yy.max() > yy.min()
    assert set(np.unique(zz)) <= {1.0, 2.0, 3.0}
    with pytest.raises(ValueError, match="3 points but values has 2"):
        background_grid(pts, [1.0, 2.0])
    with pytest.raises(ValueError, match="shape \\(n, 2\\)"):
        background_grid(np.zeros((3, 3)), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no finite"):
        background_grid(pts, [np.nan] * 3)
    with pytest.raises(ValueError, match="resolution"):
        background_grid(pts, [1.0, 2.0, 3.0], resolution=1)


@pytest.fixture(scope="module")
def predictions():
    """Two fake 'trajectories' of softmax predictions drifting apart (n_models, n_test, classes)."""
    rng = np.random.default_rng(0)
    logits = np.cumsum(rng.normal(size=(2, 20, 30, 10)) * 0.3, axis=1).reshape(40, 30, 10)
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True)


def test_umap_deterministic_under_seed(predictions):
    a = embed_trajectories(predictions, n_neighbors=10, seed=3)
    b = embed_trajectories(list(predictions), n_neighbors=10, seed=3)  # list of per-model arrays
    assert a.shape == (40, 2) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)


def test_umap_clamps_n_neighbors_with_warning(predictions):
    with pytest.warns(UserWarning, match="using n_neighbors=7"):
        emb = embed_trajectories(predictions[:8], n_neighbors=15)
    assert emb.shape == (8, 2)


def test_embed_rejects_bad_input(predictions):
    with pytest.raises(ValueError, match=f"at least {MIN_POINTS}"):
        embed_trajectories(predictions[:3])
    with pytest.raises(ValueError, match="same size"):
        embed_trajectories([predictions[0], predictions[1][:5]] * 3)
    with pytest.raises(ValueError, match="NaN"):
        bad = predictions.copy()
        bad[4, 0, 0] = np.nan
        embed_trajectories(bad)
    with pytest.raises(ValueError, match="n_neighbors"):
        embed_trajectories(predictions, n_neighbors=1)
    with pytest.raises(ValueError, match="shape"):
        embed_trajectories(np.zeros(10))
