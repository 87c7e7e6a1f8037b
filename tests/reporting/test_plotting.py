"""Figure helpers (break-even paper Fig. 1-4): they draw what they are given and agree on colours."""

import matplotlib

matplotlib.use("Agg")  # tests only; notebooks use the inline backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402

from breakeven_utils.reporting import plotting as P  # noqa: E402
from breakeven_utils.reporting.embedding import background_grid  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _trajectories(n_per_run=12):
    rng = np.random.default_rng(0)
    pts = np.cumsum(rng.normal(size=(2 * n_per_run, 2)), axis=0)
    runs = np.array(["eta0.01/s0"] * n_per_run + ["eta0.001/s0"] * n_per_run, dtype=object)
    lr = np.repeat([0.01, 0.001], n_per_run)
    it = np.tile(np.arange(n_per_run) * 10, 2)
    return pts, runs, lr, it, rng


def test_moving_average_matches_direct_centred_mean():
    v = np.array([1.0, 2.0, np.nan, 4.0, 8.0, 16.0, 3.0])
    for w in (1, 2, 3, 4):
        out = P.moving_average(v, w)
        for i in range(len(v)):
            win = v[max(0, i - (w - 1) // 2): i + w // 2 + 1]
            exp = np.nanmean(win) if np.isfinite(win).any() else np.nan
            assert out[i] == pytest.approx(exp, nan_ok=True)
    with pytest.raises(ValueError, match="window"):
        P.moving_average(v, 0)


def test_lr_colors_are_shared_and_fig1_convention():
    assert mcolors.to_rgb(P.lr_color(0.01)) == mcolors.to_rgb("tab:red")  # Fig. 1: eta = 0.01 red
    assert mcolors.to_rgb(P.lr_color(0.001)) == mcolors.to_rgb("tab:blue")  # and 0.001 blue
    assert P.lr_color(0.02) == P.lr_color(0.02) != P.lr_color(0.01)  # off-palette lr: stable colour
    with pytest.raises(ValueError):
        P.lr_color(0.0)


def test_non_learning_rate_hues_get_distinct_colours_or_a_palette():
    df = pd.DataFrame({"epoch": np.tile(np.arange(5), 2), "lambda_k": np.arange(10.0),
                       "S": np.repeat([128, 10], 5)})
    ax = P.curves(df, "epoch", "lambda_k", "S", hue_symbol="$S$").axes[0]
    smooth = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert smooth[0].get_color() != smooth[1].get_color()  # batch sizes are not learning rates
    ax = P.curves(df, "epoch", "lambda_k", "S", palette={128: "black", 10: "orange"}).axes[0]
    assert [line.get_color() for line in ax.get_lines() if line.get_linestyle() == "-"] == ["black", "orange"]
    with pytest.raises(ValueError, match="palette has no colour"):
        P.curves(df, "epoch", "lambda_k", "S", palette={128: "black"})


def test_trajectory_map_panels_background_and_markers():
    pts, runs, lr, it, rng = _trajectories()
    lam = rng.random(len(pts))
    lam[1::4] = np.nan
    fig = P.trajectory_map(pts, runs, {P.SYMBOLS["lambda_k"]: lam, "training accuracy": rng.random(len(pts))},
                           lr=lr, iterations=it, break_even={"eta0.01/s0": 42, "eta0.001/s0": np.nan},
                           resolution=20)
    axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(axes) == 2
    ax = axes[0]
    (im,) = ax.images
    assert im.get_array().shape == (20, 20)
    np.testing.assert_array_equal(im.get_array(), background_grid(pts, lam, resolution=20)[2])
    assert {a.get_ylabel() for a in fig.axes} >= {r"$\lambda_K^1$", "training accuracy"}  # colorbars
    colours = {line.get_label(): mcolors.to_hex(line.get_color()) for line in ax.get_lines()
               if not line.get_label().startswith("_")}
    assert colours[r"$\eta$ = 0.01"] == mcolors.to_hex(P.lr_color(0.01))
    assert colours[r"$\eta$ = 0.001"] == mcolors.to_hex(P.lr_color(0.001))
    star = [line for line in ax.get_lines() if line.get_gid() == "break-even"]
    assert len(star) == 1  # only the run that reached it
    assert "break-even point" in ax.get_legend_handles_labels()[1]
    # iteration 42 -> nearest recorded iteration 40 -> 5th point of the first run
    np.testing.assert_allclose(star[0].get_xydata()[0], pts[4])


def test_trajectory_map_rejects_mismatch():
    pts, runs, lr, it, rng = _trajectories()
    with pytest.raises(ValueError, match="one per point"):
        P.trajectory_map(pts, runs[:-1], rng.random(len(pts)))
    with pytest.raises(ValueError, match="several learning rates"):
        P.trajectory_map(pts, np.array(["r"] * len(pts), dtype=object), rng.random(len(pts)), lr=lr)
    with pytest.raises(ValueError, match="not in runs"):
        P.trajectory_map(pts, runs, rng.random(len(pts)), lr=lr, break_even={"eta0.1/s0": 3})


def test_scatter_vs_two_over_eta_lines_and_notes():
    rng = np.random.default_rng(1)
    lr = np.repeat([0.01, 0.001], 20)
    lam_h = np.concatenate([rng.random(20) * 150, rng.random(20) * 150])
    fig = P.scatter_vs(rng.random(40), lam_h, lr, xlabel=P.SYMBOLS["lambda_k"],
                       ylabel=P.SYMBOLS["lambda_h"], two_over_eta=True, mark=np.arange(40) == 3)
    ax = fig.axes[0]
    hlines = [line for line in ax.get_lines() if "2/" in line.get_label()]
    assert len(hlines) == 1 and hlines[0].get_ydata()[0] == pytest.approx(200.0)  # 2/0.01 drawn
    notes = [t.get_text() for t in ax.texts]
    assert any("2000" in t for t in notes)  # 2/0.001 far above the data: noted, not drawn
    assert ax.get_ylim()[1] < 1000
    assert ax.get_xlabel() == r"$\lambda_K^1$" and ax.get_ylabel() == r"$\lambda_H^1$"


def test_spectrum_shared_bins_log_counts():
    rng = np.random.default_rng(2)
    fig = P.spectrum({0.01: rng.exponential(size=24), 0.001: 3 * rng.exponential(size=24)}, bins=10)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = ax.get_legend_handles_labels()[1]
    assert labels == [r"$\eta$ = 0.01 (n = 24)", r"$\eta$ = 0.001 (n = 24)"]
    with pytest.raises(ValueError):
        P.spectrum({})


def test_curves_smoothed_over_raw_with_vlines():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"epoch": np.tile(np.arange(30), 4), "trace_k": rng.random(120),
                       "eta": np.repeat([0.1, 0.01], 60), "seed": np.tile(np.repeat([0, 1], 30), 2)})
    fig = P.curves(df, "epoch", "trace_k", "eta", units="seed", window=5, seed_band=None,
                   vlines={0.1: 7, 0.01: [12]}, vline_label="train acc > 60%")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == r"$\mathrm{Tr}(\mathbf{K})$"
    smooth = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert len(smooth) == 4  # 2 learning rates x 2 seeds
    sub = df[(df.eta == 0.1) & (df.seed == 0)]
    np.testing.assert_allclose(smooth[0].get_ydata(), P.moving_average(sub.trace_k.to_numpy(), 5))
    vl = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert sorted(line.get_xdata()[0] for line in vl) == [7, 12]
    with pytest.raises(ValueError, match="column"):
        P.curves(df, "epoch", "nope", "eta")


def test_curves_seed_band_is_mean_and_sd_of_smoothed_seed_curves():
    from matplotlib.collections import PolyCollection
    rng = np.random.default_rng(4)
    n, seeds = 20, [0, 1, 2]
    df = pd.DataFrame({"epoch": np.tile(np.arange(n), 2 * len(seeds)), "trace_k": rng.random(6 * n),
                       "eta": np.repeat([0.1, 0.01], 3 * n), "seed": np.tile(np.repeat(seeds, n), 2)})
    df = df[~((df.eta == 0.01) & (df.seed > 0))]  # eta=0.01: one seed, drawn as a plain line
    fig = P.curves(df, "epoch", "trace_k", "eta", units="seed", window=3, seed_band="sd")
    ax = fig.axes[0]
    sm = np.stack([P.moving_average(df[(df.eta == 0.1) & (df.seed == s)].trace_k.to_numpy(), 3)
                   for s in seeds])
    lines = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_linestyle() == "-"}
    band_label = [k for k in lines if "mean ± SD, 3 seeds" in k]
    assert len(band_label) == 1 and len(lines) == 2
    np.testing.assert_allclose(lines[band_label[0]].get_ydata(), sm.mean(0))
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    verts = bands[0].get_paths()[0].vertices
    hi = sm.mean(0) + sm.std(0, ddof=1)
    # the band's upper edge is mean + 1 SD (seaborn's 'sd': ddof=1)
    np.testing.assert_allclose(np.sort(verts[:, 1])[-1], hi.max(), rtol=1e-9)
    with pytest.raises(ValueError, match="seed_band"):
        P.curves(df, "epoch", "trace_k", "eta", units="seed", seed_band="ci")


def test_provenance_and_annotate_replaces_footer():
    assert P.provenance("CIFAR-10, JPEG copy", "cpu", [0, 1, 2]) == \
        "CIFAR-10, JPEG copy · profile cpu · seeds 0, 1, 2"
    assert P.provenance("x", "paper", range(5)).endswith("seeds 0–4")
    assert P.provenance("x", "smoke", 0).endswith("seed 0")
    assert P.provenance("x", "cpu", [0], overrides={"seeds": [0], "n_train": 500}, code="code abc1234") == \
        "x · profile cpu with seeds=[0], n_train=500 · seed 0 · code abc1234"
    fig, _ = P.subplots(2)
    P.annotate(fig, "first")
    P.annotate(fig, "second")
    assert [t.get_text() for t in fig.texts] == ["second"]
