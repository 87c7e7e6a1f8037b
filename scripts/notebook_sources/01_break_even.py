# Source of notebooks/01_break_even.ipynb, cell by cell ("# %% [markdown]" / "# %%"
# separate cells; "# %% tags=parameters" marks the papermill parameters cell).
# `python scripts/build_notebooks.py 01_break_even` builds its smoke copy for the tests
# (tests/notebooks/); `make reproduce` fills notebooks/ with the outputs of the run that
# draws the committed figures/. Commit the source and both notebooks.

# %% [markdown]
# # The break-even point (break-even paper, Sec. 4.1, App. A and App. C)
#
# **The outputs below are the `cpu` run on real data** that drew the committed
# `figures/break_even/` (all claims: `figures/CLAIMS.md`; its footers name the data, profile,
# seeds and code). "Run All" runs the profile set in the `parameters` cell: `cpu` reads
# the run store `runs/` and computes what it lacks (about 21 min from an empty store on 2
# cores), `smoke` takes seconds on synthetic data.
#
# Jastrzębski et al., *The Break-Even Point on Optimization Trajectories of Deep
# Neural Networks*, ICLR 2020. SimpleCNN on CIFAR-10 is trained with plain SGD
# (batch 128) at two learning rates until it reaches 65% training accuracy. Along
# every trajectory we record the spectral norm of the gradient covariance K
# ($\lambda_K^1$, $L=25$ mini-batch gradients of size $M=128$), the spectral norm of the
# Hessian ($\lambda_H^1$, Lanczos on a small measurement set), $\Delta\mathcal{L}$ (loss on the
# measurement set before minus after the step), the test-set predictions, and the
# left-hand side of the paper's stability condition, Eq. (1).
#
# Figures: Fig. 1 and Fig. 8 (UMAP of the trajectories), Fig. 2 ($\lambda_H^1$ and
# $\Delta\mathcal{L}$ against $\lambda_K^1$), Fig. 3 (spectra of K and H), Fig. 9 ($\lambda_K^1$ with
# $M=128$ against $M=1$), and, beyond the paper, the break-even point located by its
# own definition. A claims table at the end states, computed from the runs, which of
# the paper's claims hold at this scale.
#
# Run it with `make reproduce` (profile `cpu`), or headless with
# `papermill notebooks/01_break_even.ipynb out.ipynb -p profile cpu`, or "Run All"
# here after setting `profile` below.

# %% tags=parameters
profile = "cpu"        # smoke | cpu | paper
output_root = None     # None: figures/ (cpu, paper); runs/smoke_figures/, runs/override_figures/
run_store = None       # None: $BREAKEVEN_RUNS, else runs/
jobs = None            # runs in parallel (processes, one torch thread each); None: 1 at smoke, else 2
overrides = {}         # profile keys to override, e.g. {"seeds": [0, 1, 2]}

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from breakeven_utils.core.tables import to_markdown
from breakeven_utils.papers import notebook
from breakeven_utils.papers.break_even import analysis as be_analysis
from breakeven_utils.papers.break_even import claims as be_claims
from breakeven_utils.papers.break_even import runs as be_runs
from breakeven_utils.papers.break_even import settings as be_settings
from breakeven_utils.papers.common import paper_values_table
from breakeven_utils.recorder import load_run_data
from breakeven_utils.reporting import claims, embedding, plotting
from breakeven_utils.reporting.plotting import SYMBOLS

nb = notebook.start("01_break_even", profile, output_root, run_store, jobs, overrides)  # paths, sweeps
s = be_settings.settings(profile, **overrides)
out = nb.out
configs = be_runs.trajectory_configs(s)
data = load_run_data(configs[0])  # the data set behind every run (for its label and size)
prov = nb.provenance(data.label, s["seeds"])
print(f"profile {profile!r}: {data.label}, n_train={len(data.train)}, measurement set "
      f"{len(data.measure)} (lambda_H on {s['hessian_n'] or len(data.measure)}), "
      f"learning rates {s['lrs']}, seeds {s['seeds']}, batch {s['batch_size']}")

# %% [markdown]
# ## The trajectories
#
# One run per learning rate and seed, cached in the run store: running the notebook
# again only loads them. Training stops at the first measurement with training
# accuracy (on the measurement set) of at least 65%, or at the profile's epoch budget.

# %%
# executor (local pool, SLURM, Dask), device, jobs and threads per run: make reproduce's
# EXECUTOR=/DEVICE=/JOBS=/THREADS= (store.sweeps.sweep_env; one torch thread per process when
# several run side by side); the Fig. 9 runs are submitted with the trajectories (longest
# first) so both cores stay busy
fig9_cfgs = be_runs.fig9_configs(s)
sweep = nb.sweep(configs + fig9_cfgs)
results = [nb.load(c) for c in configs]
for r in results:
    r.metrics["run"] = be_runs.run_label(r.config.lr, r.config.seed)
df = pd.concat([r.metrics.assign(lr=r.config.lr, seed=r.config.seed) for r in results],
               ignore_index=True)
summary = df.groupby(["lr", "seed"]).agg(
    iterations=("iteration", "max"), final_train_acc=("train_acc", "last"),
    max_lambda_K_1=("lambda_K_1", "max"), max_lambda_H_1=("lambda_H_1", "max"))
summary["status"] = [r.status for r in results]
summary.round(2)

# %% [markdown]
# ## Fig. 1 and Fig. 8: the trajectories in the space of test-set predictions
#
# *Paper:* every model on a trajectory, represented by its test-set predictions and
# embedded in 2-D with UMAP; the background shows the quantity measured at the
# trajectory point with the nearest embedding. For the lower learning rate, after
# the break-even point, the trajectory is steered to regions of larger $\lambda_K^1$ at
# the same training accuracy. Stars mark the break-even point found from Eq. (1).

# %%
snaps, meta = [], []
for r in results:
    sm = r.softmax(mmap=False)
    its = np.asarray(r.arrays["softmax_iteration"]).astype(int)
    m = r.metrics.set_index("iteration")
    for i, t in enumerate(its):
        snaps.append(sm[i])
        meta.append(dict(run=be_runs.run_label(r.config.lr, r.config.seed), lr=r.config.lr, iteration=t,
                         **m.loc[t, ["train_acc", "lambda_K_1", "lambda_K_ratio", "trace_K",
                                     "lambda_H_1"]].to_dict()))
meta = pd.DataFrame(meta)
points = embedding.embed_trajectories(np.stack(snaps), seed=0)
bep = be_analysis.break_even_points(df)
marks = {be_runs.run_label(b.lr, b.seed): b.iteration for b in bep.itertuples()}

fig1 = plotting.trajectory_map(
    points, meta["run"], {SYMBOLS["lambda_k"]: meta["lambda_K_1"], "training accuracy": meta["train_acc"]},
    lr=meta["lr"], iterations=meta["iteration"], break_even=marks)
fig1.suptitle("Fig. 1: UMAP of test-set predictions along SGD trajectories")
plotting.annotate(fig1, prov)
nb.save_figure(fig1, "fig1_umap_lambda_k")
fig8 = plotting.trajectory_map(
    points, meta["run"], {SYMBOLS["ratio_k"]: meta["lambda_K_ratio"], SYMBOLS["trace_k"]: meta["trace_K"],
                          SYMBOLS["lambda_h"]: meta["lambda_H_1"]},
    lr=meta["lr"], iterations=meta["iteration"], break_even=marks)
fig8.suptitle("Fig. 8: the same trajectories, coloured by the conditioning of K, Tr(K) and the Hessian")
plotting.annotate(fig8, prov)
nb.save_figure(fig8, "fig8_umap_ratio_trace_lambda_h")
plt.show()

# %% [markdown]
# ## Fig. 2: $\lambda_H^1$ and $\Delta\mathcal{L}$ against $\lambda_K^1$
#
# *Paper:* $\lambda_K^1$ is initially correlated with $\lambda_H^1$, and training is
# generally stable ($\Delta\mathcal{L} > 0$) before $\lambda_K^1$ reaches its maximum. The dashed
# lines are $\lambda_H^1 = 2/\eta$, where full-batch GD loses stability; stars mark the
# break-even point.

# %%
is_bep = np.zeros(len(df), bool)
for b in bep.dropna(subset=["iteration"]).itertuples():
    is_bep |= ((df["lr"] == b.lr) & (df["seed"] == b.seed) & (df["iteration"] == b.iteration)).to_numpy()
fig2, (a, b_) = plotting.subplots(2)
plotting.scatter_vs(df["lambda_K_1"], df["lambda_H_1"], df["lr"], xlabel=SYMBOLS["lambda_k"],
                    ylabel=SYMBOLS["lambda_h"], ax=a, two_over_eta=True, mark=is_bep)
plotting.scatter_vs(df["lambda_K_1"], df["delta_loss"], df["lr"], xlabel=SYMBOLS["lambda_k"],
                    ylabel=SYMBOLS["delta_loss"], ax=b_, hline=0.0, mark=is_bep)
fig2.suptitle("Fig. 2: curvature and loss change against the gradient-noise scale")
plotting.annotate(fig2, prov)
nb.save_figure(fig2, "fig2_lambda_h_delta_loss_vs_lambda_k")
plt.show()

# %% [markdown]
# ## Fig. 3: the spectra of K and H where $\lambda_K^1$, respectively $\lambda_H^1$, is largest
#
# *Paper:* the lower learning rate finds a region with worse conditioning of K and H,
# visible as more outliers ("spikes") in both spectra. K: the $L-1$ non-zero
# eigenvalues of the Gram estimate; H: the top-k eigenvalues by Lanczos on the
# measurement set (k = `spectrum_k` of the profile).

# %%
spec_K, spec_H, where = be_analysis.spectra_at_max(results)
fig3, (a, b_) = plotting.subplots(2)
plotting.spectrum(spec_K, ax=a, xlabel=r"eigenvalue of $\mathbf{K}$")
plotting.spectrum(spec_H, ax=b_, xlabel=r"eigenvalue of $\mathbf{H}$ (top %d)" % s["spectrum_k"])
fig3.suptitle("Fig. 3: spectra of K and H at their largest spectral norm")
plotting.annotate(fig3, prov)
nb.save_figure(fig3, "fig3_spectra_k_h")
plt.show()
pd.DataFrame(where).T

# %% [markdown]
# ## Beyond the paper: the break-even point by its own definition
#
# The paper defines the break-even point as the first iteration at which the
# left-hand side of Eq. (1),
# $(1-\eta\lambda_H^1)^2 + s^2\,\eta^2 (N-S)/(S(N-1))$, reaches 1, with $s^2$ the variance over
# examples of the curvature along the top Hessian eigenvector,
# $e^\top H_i e$ (per-example Hessian-vector products on the measurement set), N the
# training-set size and S the batch size. No existing tool plots it; here it is,
# measured along every trajectory. Theorem 1 predicts that it comes earlier, and at a
# smaller $\lambda_H^1$, for the larger learning rate.

# %%
fig_be, (a, b_) = plotting.subplots(2)
for (lr, seed), g in df.groupby(["lr", "seed"]):
    kw = dict(color=plotting.lr_color(lr), alpha=0.8,
              label=f"$\\eta$={lr:g}" if seed == s["seeds"][0] else None)
    a.plot(g["iteration"], g["breakeven_lhs"], marker=".", **kw)
    b_.plot(g["iteration"], g["lambda_H_1"], marker=".", **kw)
    b_.axhline(2 / lr, color=plotting.lr_color(lr), ls="--", lw=0.8)
for bb in bep.dropna(subset=["iteration"]).itertuples():
    a.axvline(bb.iteration, color=plotting.lr_color(bb.lr), ls=":", lw=1)
a.axhline(1.0, color="k", lw=0.8)
a.set(xlabel=SYMBOLS["iteration"], ylabel="LHS of Eq. (1)", yscale="log", title="stability along $e_H^1$")
b_.set(xlabel=SYMBOLS["iteration"], ylabel=SYMBOLS["lambda_h"], yscale="log",
       title=r"$\lambda_H^1$ and $2/\eta$ (dashed)")
a.legend()
fig_be.suptitle("Break-even point: first iteration with LHS of Eq. (1) >= 1 (dotted)")
plotting.annotate(fig_be, prov)
nb.save_figure(fig_be, "break_even_point_eq1")
plt.show()
bep.round(3)

# %% [markdown]
# ## Fig. 9 (App. C): $\lambda_K^1$ estimated with $M=128$ against $M=1$
#
# *Paper:* the largest eigenvalue of the Gram estimate from mini-batch gradients of
# size $M=128$ is strongly correlated along the trajectory with the one from
# per-example gradients ($M=1$), for $\eta = 0.1, 0.01, 0.001$. The two differ in
# scale (the $M$-sample estimate is about $K/M$); the claim is about correlation.

# %%
fig9_runs = [nb.load(c) for c in fig9_cfgs]
corr = be_analysis.fig9_correlations(fig9_runs)
fig9, axes = plotting.subplots(len(fig9_runs))
for ax, r, row in zip(np.atleast_1d(axes), fig9_runs, corr.itertuples()):
    ax.scatter(r.metrics["lambda_K1_1"], r.metrics["lambda_K_1"], s=12, color=plotting.lr_color(r.config.lr))
    ax.set(xlabel=r"$\lambda_K^1$ ($M=1$, L=%d)" % s["K1_L"], ylabel=r"$\lambda_K^1$ ($M=%d$, L=%d)" % (
        s["K_M"] or s["batch_size"], s["K_L"]),
        title=f"$\\eta$={r.config.lr:g}: r = {row.pearson_r:.2f} (n={row.n}, p={row.p:.2g})")
fig9.suptitle("Fig. 9: Pearson correlation of the two estimates of $\\lambda_K^1$ along a trajectory")
plotting.annotate(fig9, nb.provenance(data.label, [s["seeds"][0]]))
nb.save_figure(fig9, "fig9_lambda_k_m128_vs_m1")
plt.show()
nb.save_table(corr, "fig9_correlations")
corr.round({"pearson_r": 2, "p": 3})

# %% [markdown]
# ## Claims
#
# Each row states a claim of the paper, the setting, the paper's statement (from
# `papers.common.BREAK_EVEN_PAPER_VALUES`, each with the sentence it comes from, listed
# below), what was measured here, and whether the claim holds. The rules are fixed in the
# package (`papers.break_even.claims`, `breakeven_utils.reporting.claims`), not tuned to the
# outcome: a correlation needs at least 8 points, r >= 0.5 (Fig. 9's "strong": r >= 0.7) and
# p < 0.05, and otherwise is *not testable at this scale*; an ordering of maxima compares the
# maxima of the curves smoothed over `be_settings.WINDOW` measurements and holds only when the
# difference exceeds
# 1.96 combined standard errors (seed spread; with one seed the bootstrap over the $L$
# gradients of K where the runs recorded it; else a 5% margin, as the reason says).

# %%
claim_rows = be_claims.claims(df, spec_K, spec_H, corr, setting=f"SimpleCNN, {data.label}", m1_L=s["K1_L"],
                              outlier_counts=be_analysis.outlier_counts_at_max(results))
claim_rows = nb.save_claims(claim_rows)  # claims.csv/.md; none is decided at smoke
nb.write_manifest({"profile": profile, "data": data.label, "seeds": s["seeds"], "learning_rates": s["lrs"]},
                  runs=results + fig9_runs)
print("verdicts:", claims.verdict_counts(claim_rows))
display(Markdown(to_markdown(claims.compact_table(claim_rows))))
with pd.option_context("display.max_colwidth", None):
    display(paper_values_table())

# %% [markdown]
# ## Regression check (nbval)
#
# The cell below prints rounded summary numbers and the claims table's structure;
# `make test` re-runs this notebook's smoke copy (`tests/notebooks/`) and compares them with
# its committed output. Here they show the `cpu` run.

# %%
# NBVAL_CHECK_OUTPUT
print("runs:", len(results), "| statuses:", sorted({r.status for r in results}))
print("measurements per run:", [len(r.metrics) for r in results])
print("max lambda_K^1 per lr:", {lr: round(v, 2) for lr, v in df.groupby("lr")["lambda_K_1"].max().items()})
print("claims:", len(claim_rows), "| columns:", list(claims.compact_table(claim_rows).columns))
print("verdict vocabulary ok:", all(c.verdict in claims.VERDICTS for c in claim_rows))
print("every claim links an existing figure:", all((out / c.figure_file).is_file() for c in claim_rows))
