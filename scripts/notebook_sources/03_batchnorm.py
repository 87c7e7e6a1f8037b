# Source of notebooks/03_batchnorm.ipynb, cell by cell ("# %% [markdown]" / "# %%"
# separate cells; "# %% tags=parameters" marks the papermill parameters cell).
# `python scripts/build_notebooks.py 03_batchnorm` builds its smoke copy for the tests
# (tests/notebooks/); `make reproduce` fills notebooks/ with the outputs of the run that
# draws the committed figures/. Commit the source and both notebooks.

# %% [markdown]
# # BatchNorm needs a high learning rate (break-even paper, Sec. 4.3 and App. H)
#
# **The outputs below are the `cpu` run on real data** that drew the committed
# `figures/batchnorm/` (all claims: `figures/CLAIMS.md`; its footers name the data, profile,
# seeds and code). "Run All" runs the profile set in the `parameters` cell: `cpu` reads
# the run store `runs/` and computes what it lacks (about 18 min from an empty store on 2
# cores), `smoke` takes seconds on synthetic data.
#
# Jastrzębski et al., *The Break-Even Point on Optimization Trajectories of Deep
# Neural Networks*, ICLR 2020. The paper's third claim: SGD's implicit
# pre-conditioning (Conjectures 1 and 2) also holds in a network with batch
# normalisation, and BatchNorm alone does not buy a well-conditioned loss surface:
# with a small learning rate a batch-normalised SimpleCNN ends up worse conditioned
# than the plain SimpleCNN trained with a larger one.
#
# **Runs.** CIFAR-10, SimpleCNN-BN (BatchNorm after every layer but the last) and plain
# SimpleCNN, Keras initialisation (Glorot-uniform kernels, zero biases, BN $\gamma=1$,
# $\beta=0$), plain SGD:
# - learning rate (Fig. 7): SimpleCNN-BN at $\eta \in \{0.001, 0.01, 0.1, 1.0\}$, SimpleCNN at
#   $\eta \in \{0.01, 1.0\}$, batch size $S=128$. SimpleCNN at $\eta=1.0$ diverges in the paper; a
#   diverging run is recorded as `diverged` with its iteration, named in the legends and
#   the table, and the notebook carries on;
# - batch size (App. H, Fig. 26): SimpleCNN-BN with $S \in \{10, 32, 128, 512\}$ at $\eta=0.01$. The
#   paper does not say which $\eta$ its batch-size sweep used; we take $0.01$, the learning rate
#   of its Sec. 4.3 comparison, which also makes $S=128$ the same run as the $\eta=0.01$ run of
#   the learning-rate sweep (computed once).
#
# **Measurements** (dense early, then every epoch): $\|g\|/\|g_5\|$, the norm of the mini-batch
# gradient of the SGD step over the norm of its projection on the top-5 eigenvectors of K
# (eigenvectors from the $L\times L$ Gram estimate of App. C, $L=25$, $M=128$); $\lambda_K^1$,
# $\lambda_K^*/\lambda_K^1$ and $\mathrm{Tr}(\mathbf{K})$ from the same estimate; $\lambda_H^1$ (SimpleCNN-BN,
# Lanczos); $\|\gamma\|$ of the last BN layer; training accuracy (measurement set) and validation
# accuracy.
#
# **BatchNorm mode**, written on every figure: K and H are measured with batch statistics
# (train mode), as the paper's Keras code computed them, with the running statistics
# frozen during the measurement (tested bitwise in `tests/papers/batchnorm/test_batchnorm.py`); accuracies
# use the running statistics (eval mode); $\|g\|/\|g_5\|$ uses the step's own gradient.
#
# **Scale.** `cpu` (about 18 minutes on 2 cores from an empty run store): 3,200 CIFAR-10 images (K
# needs $L\cdot M = 3{,}200$), 500 validation images, every run 300 steps whatever its $\eta$
# or $S$ (12 epochs at $S=128$; equal steps, so the S sweep's runs are compared at the same
# number of updates), one seed, measurements at iterations 0, 5, 12, every 25 to 100, then
# every 50, $\lambda_H^1$ on 64 examples for the learning-rate sweep only. `paper`: the
# 45k/5k split, 200 epochs, 5 seeds, for a GPU.
#
# Run it with `make reproduce` (profile `cpu`), or headless with
# `papermill notebooks/03_batchnorm.ipynb out.ipynb -p profile cpu`, or "Run All" here
# after setting `profile` below.

# %% tags=parameters
profile = "cpu"        # smoke | cpu | paper
output_root = None     # None: figures/ (cpu, paper); runs/smoke_figures/, runs/override_figures/
run_store = None       # None: $BREAKEVEN_RUNS, else runs/
jobs = None            # runs in parallel (processes, one torch thread each); None: 1 at smoke, else 2
overrides = {}         # profile keys to override, e.g. {"seeds": [0, 1, 2]}

# %%

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from breakeven_utils.papers import notebook
from breakeven_utils.papers.batchnorm import analysis as bn_analysis
from breakeven_utils.papers.batchnorm import claims as bn_claims
from breakeven_utils.papers.batchnorm import figures as bn_figures
from breakeven_utils.papers.batchnorm import runs as bn_runs
from breakeven_utils.papers.batchnorm import settings as bn_settings
from breakeven_utils.papers.common import tidy
from breakeven_utils.recorder import load_run_data
from breakeven_utils.reporting import claims as cl
from breakeven_utils.reporting.plotting import SYMBOLS

nb = notebook.start("03_batchnorm", profile, output_root, run_store, jobs, overrides)  # paths, sweeps
s = bn_settings.settings(profile, **overrides)  # bad input (empty eta/S lists, S > n_train, ...) fails here
out = nb.out
# EXECUTOR=/DEVICE=/JOBS=/THREADS= (store.sweeps.sweep_env) choose where the runs go
sweep_kw = nb.sweep_env()
sweeps = bn_runs.sweeps(s)
by_name = {sw.name: sw for sw in sweeps}
configs = bn_runs.run_configs(profile, **overrides)
data = load_run_data(configs[0])
footer = nb.provenance(data.label, s["seeds"]) + "\n" + bn_figures.BN_MODES_TEXT
W = s["window"]
c0 = by_name["bn_eta"].configs[0]
budget = f"{c0.max_iters} steps per run" if c0.max_iters else f"{c0.max_epochs} epochs"
print(f"profile {profile!r}: {data.label}, n_train={len(data.train)}, n_val={len(data.val)}, "
      f"{budget}, seeds {s['seeds']}; {len(configs)} distinct runs "
      f"(jobs={sweep_kw['jobs']}, threads per job: {sweep_kw['threads_per_job'] or 'default'})")
print(f"K: L={c0.K_L}, M={c0.K_M}, BN mode {c0.K_bn_mode!r}; lambda_H on {c0.hessian_n} examples, "
      f"tol {c0.hessian_tol:g}, BN mode {c0.hessian_bn_mode!r}")
print(f"measurements at iterations {list(c0.measure_at) if c0.measure_at else 'dense, then every epoch'} "
      f"(S={c0.batch_size}); moving-average window {W}; early window {s['early_iters']} iterations")
for sw in sweeps:
    print(f"  {sw.name:10s} {sw.label:38s} values {sorted(set(sw.values))}")

# %% [markdown]
# ## The runs
#
# Every configuration runs once and is cached in the run store (a second pass only
# loads). A run that diverges keeps its measurements up to the divergence, and its status
# and iteration are listed here and in the legends; a run that fails is listed and
# skipped, so the notebook always finishes.

# %%
raw = nb.sweep(configs, errors="record")  # one line per finished run with the time left (not at smoke)
for f in raw.attrs.get("failed", []):
    print("failed run (skipped):", f["key"], f["error"])
df = pd.concat([tidy(raw, sw) for sw in sweeps], ignore_index=True)
runs = bn_analysis.run_table(df)
runs.round(3)

# %% [markdown]
# ## Fig. 7a: $\|g\|/\|g_5\|$, $\lambda_H^1$ and $\lambda_K^1$ over the learning rate
#
# *Paper:* with a large $\eta$ the mini-batch gradient of SimpleCNN-BN leaves the subspace of
# K's top-5 eigenvectors ($\|g\|/\|g_5\|$ grows) and $\lambda_K^1$, $\lambda_H^1$ stay lower; SimpleCNN-BN
# at $\eta=0.001$ and SimpleCNN at $\eta=0.01$ have similar $\|g\|/\|g_5\|$ (the numbers are in the
# claims table). *Here:* one line per setting, a moving average over the faint raw points.

# %%
bn_eta, plain_eta, bn_S = (df[df["sweep"] == n] for n in ("bn_eta", "plain_eta", "bn_S"))
G5 = r"$\|g\|/\|g_5\|$"
fig7a = bn_figures.figure([
    dict(d=bn_eta, y="g_over_g5", ylabel=G5, window=W, title="SimpleCNN-BN"),
    dict(d=plain_eta, y="g_over_g5", ylabel=G5, window=W, title="SimpleCNN"),
    dict(d=bn_eta, y="lambda_H_1", ylabel=SYMBOLS["lambda_h"], window=W, title="SimpleCNN-BN"),
    dict(d=bn_eta, y="lambda_K_1", ylabel=SYMBOLS["lambda_k"], window=W, title="SimpleCNN-BN")],
    "Fig. 7a: the effect of the learning rate (S = %d)" % s["batch_size"], footer)
nb.save_figure(fig7a, bn_figures.FIGURES["fig7a"])
plt.show()

# %% [markdown]
# ## Fig. 7b: the early phase, $\|\gamma\|$, $\lambda_K^1$ and $\lambda_K^*/\lambda_K^1$ (SimpleCNN-BN)
#
# *Paper:* training starts where $\lambda_K^1$ is high (gradient explosion at initialisation in
# BN networks), then $\lambda_K^1$ decays for all but the smallest $\eta$; $\eta=1.0$ and $\eta=0.1$
# initially decrease $\|\gamma\|$ of the last BN layer, a mechanism the paper proposes for how a
# high $\eta$ steers towards better-conditioned regions. *Here:* iteration axis; the dotted line
# ends the window of the early-phase claims.

# %%
early = dict(x="iteration", xmax=s["early_plot_iters"], vline=s["early_iters"], window=W)
fig7b = bn_figures.figure([
    dict(d=bn_eta, y="gamma_norm", ylabel=r"$\|\gamma\|$ (last BN layer)", **early),
    dict(d=bn_eta, y="lambda_K_1", ylabel=SYMBOLS["lambda_k"], **early),
    dict(d=bn_eta, y="lambda_K_ratio", ylabel=SYMBOLS["ratio_k"], **early)],
    "Fig. 7b: SimpleCNN-BN early in training, different learning rates", footer)
nb.save_figure(fig7b, bn_figures.FIGURES["fig7b"])
plt.show()

# %% [markdown]
# ## Sec. 4.3: BatchNorm with a small learning rate against no BatchNorm
#
# *Paper:* SimpleCNN-BN at $\eta=0.001$ against SimpleCNN at $\eta=0.01$: $\|g\|/\|g_5\|$ "1.90 (1.37)
# and 2.02 (1.09)" (our reading below), maximum $\lambda_K^1$ 12.05 vs 3.30, maximum
# $\lambda_K^*/\lambda_K^1$ 0.343 vs 0.24; only the large learning rate ($\eta=1.0$) gives
# SimpleCNN-BN the smoothing attributed to BatchNorm. *Here:* the three settings on common
# axes.

# %%
cmp, names = bn_figures.comparison(df, s)
common = dict(d=cmp, hue="curve", names=names, window=W)
fig43 = bn_figures.figure([dict(y="g_over_g5", ylabel=G5, **common),
                   dict(y="lambda_K_1", ylabel=SYMBOLS["lambda_k"], **common),
                   dict(y="lambda_K_ratio", ylabel=SYMBOLS["ratio_k"], **common)],
                  "Sec. 4.3: SimpleCNN-BN at small and large eta against SimpleCNN", footer)
nb.save_figure(fig43, bn_figures.FIGURES["sec43"])
plt.show()

# %% [markdown]
# ## Fig. 26 (App. H): the same over the batch size
#
# *Paper:* decreasing $S$ acts like increasing $\eta$, except for the smallest $S=10$, whose
# maximum $\|g\|/\|g_5\|$ and $\lambda_K^*/\lambda_K^1$ are smaller than for the larger batch sizes. K is
# measured with $M=128$ for every $S$.

# %%
fig26a = bn_figures.figure([
    dict(d=bn_S, y="g_over_g5", ylabel=G5, param="batch_size", window=W),
    dict(d=bn_S, y="lambda_H_1", ylabel=SYMBOLS["lambda_h"], param="batch_size", window=W,
         title="" if s["lambda_H_S"] else f"measured for S={s['batch_size']} only at this profile"),
    dict(d=bn_S, y="lambda_K_1", ylabel=SYMBOLS["lambda_k"], param="batch_size", window=W)],
    f"Fig. 26a: SimpleCNN-BN, different batch sizes (eta = {s['lr_for_S']:g})", footer)
nb.save_figure(fig26a, bn_figures.FIGURES["fig26a"])
plt.show()
fig26b = bn_figures.figure([
    dict(d=bn_S, y="gamma_norm", ylabel=r"$\|\gamma\|$ (last BN layer)", param="batch_size", **early),
    dict(d=bn_S, y="lambda_K_1", ylabel=SYMBOLS["lambda_k"], param="batch_size", **early),
    dict(d=bn_S, y="lambda_K_ratio", ylabel=SYMBOLS["ratio_k"], param="batch_size", window=W)],
    f"Fig. 26b: SimpleCNN-BN early in training, different batch sizes (eta = {s['lr_for_S']:g})", footer)
nb.save_figure(fig26b, bn_figures.FIGURES["fig26b"])
plt.show()

# %% [markdown]
# ## Training and validation accuracy, $\mathrm{Tr}(\mathbf{K})$, every run
#
# Accuracies with the running statistics (eval mode): training accuracy on the measurement
# set, validation accuracy on the held-out split.

# %%
rows = []
for d, param, name in ((bn_eta, "lr", "SimpleCNN-BN"), (plain_eta, "lr", "SimpleCNN"),
                       (bn_S, "batch_size", f"SimpleCNN-BN, eta = {s['lr_for_S']:g}")):
    rows += [dict(d=d, y=y, param=param, window=W, title=name)
             for y in ("train_acc", "val_acc", "trace_K")]
fig_acc = bn_figures.figure(rows, "Accuracy and Tr(K) of every run", footer, ncols=3)
nb.save_figure(fig_acc, bn_figures.FIGURES["acc"])
plt.show()

# %% [markdown]
# ## Claims
#
# Each row is computed from the runs above and carries the paper's sentence it tests. Peaks
# are compared by the package's one rule (`claims.compare_peaks`): for SimpleCNN-BN the first
# measurement and the initial transient (the decay from the high value at initialisation,
# `claims.transient_end`) are never a peak, for $\lambda_K^*/\lambda_K^1$ too; a peak at a
# curve's last measurement is a lower bound (a step it could flip is not testable, naming the
# still-rising curve); the raw maxima and those of the curves smoothed over `window`
# measurements must agree. An ordering holds only when every consecutive step goes the
# predicted way by more than 1.96 combined standard errors; otherwise the verdict is "not
# testable at this scale (within noise)" or "does not hold". Standard errors: the spread over
# seeds when there are several; with one seed, for $\lambda_K^1$ and $\mathrm{Tr}(\mathbf{K})$ the
# bootstrap over the $L$ mini-batch gradients of each K estimate (`claims.bootstrap_se`); for
# $\lambda_H^1$ the scatter of its raw curve about the smoothed one (the Lanczos tolerance only as a
# floor); for $\lambda_K^*/\lambda_K^1$ and $\|g\|/\|g_5\|$ none is available from one run, and a step
# must exceed 5% of the larger value
# (notebook 2's rule). Each row's reason names the margin it used.
#
# The paper's sentence on $\|g\|/\|g_5\|$ reads, as written: *"First, the maximum and minimum
# values of $\|g\|/\|g_5\|$ are 1.90 (1.37) and 2.02 (1.09), respectively."* We read it per
# setting, as the two sentences after it must be read ($\lambda_K^1$: 12.05 for SimpleCNN-BN at
# $\eta=0.001$ and 3.30, Sec. 4.2's value for SimpleCNN at $\eta=0.01$): SimpleCNN-BN at $\eta=0.001$
# has maximum 1.90 (minimum 1.37), SimpleCNN at $\eta=0.01$ maximum 2.02 (minimum 1.09). Read per
# statistic (maxima 1.90 vs 1.37, minima 2.02 vs 1.09), SimpleCNN-BN's minimum would exceed
# its maximum. Note also that the paper's ratio numbers (0.343 for SimpleCNN-BN at
# $\eta=0.001$ vs 0.24) favour BatchNorm: the row tests the paper's numbers as printed.

# %%
claims = bn_claims.claims(df, s)
claims = nb.save_claims(claims)  # claims.csv/.md; none is decided at smoke
maxima = bn_analysis.maxima(df, W)
nb.save_table(maxima, "maxima")
with pd.option_context("display.max_colwidth", None):
    display(cl.compact_table(claims))
for c in claims:
    display(Markdown(f"- **{c.claim}** ({c.section}, {c.figure}): paper {c.paper_value}; ours {c.ours} "
                     f"→ *{c.verdict}*" + (f" ({c.reason})" if c.reason else "")))
nb.write_manifest({"profile": profile, "data": data.label, "seeds": s["seeds"], "runs": len(configs),
                   "sweeps": {sw.name: sorted(set(sw.values)) for sw in sweeps},
                   "statuses": raw.groupby("key")["status"].first().value_counts().to_dict(),
                   "verdicts": cl.verdict_counts(claims)}, runs=raw)
print(f"notebook wall time: {nb.seconds:.0f} s at profile {profile!r} "
      f"({len(configs)} runs; cached runs are only loaded)")

# %% [markdown]
# ## Regression check (nbval)
#
# The cell below prints rounded summary numbers and the claims table's structure;
# `make test` re-runs this notebook's smoke copy (`tests/notebooks/`) and compares them with
# its committed output. Here they show the `cpu` run.

# %%
# NBVAL_CHECK_OUTPUT
print("runs:", len(configs), "| statuses:", raw.groupby("key")["status"].first().value_counts().to_dict())
print("sweeps:", {sw.name: sorted(set(sw.values)) for sw in sweeps})
print("claims:", len(claims), "| verdicts in vocabulary:", all(c.verdict in cl.VERDICTS for c in claims))

# %% [markdown]
# The maxima of lambda_K^1 per sweep, not compared by `make test`: at `smoke`, SimpleCNN-BN on
# mini-batches of 8 is sensitive to the CPU's floating-point kernels (its maximum reads 2.8 on
# an Intel Xeon and 2.6 on an AMD EPYC from the same code and seeds).

# %%
for name, g in maxima.groupby("sweep", sort=False):
    print(name, {(int(v) if name == "bn_S" else float(v)): round(k, 1)
                 for v, k in zip(g["value"], g["max_lambda_K_1"])})
