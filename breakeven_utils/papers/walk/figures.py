"""A Walk with SGD: the paper's three-panel plot of a stretch of the trajectory (Fig. 1,
2, 9-21)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from breakeven_utils.papers.walk.measures import ALPHAS

__all__ = ["plot_walk"]


def plot_walk(axes, steps: pd.DataFrame, title: str = ""):
    """The paper's 3-panel plot (Fig. 1): top, the loss at the 11 interpolation points of
    each step placed at t + alpha, grey lines at the iterations, the valley floor (each
    step's minimum) as a dashed orange line; middle, cos(g_{t-1}, g_t); bottom,
    ||theta_t - theta_0||."""
    ax0, ax1, ax2 = axes
    if steps.empty or "step" not in steps:  # a run that ended before its interpolated stretch
        ax0.set_title(f"{title}\nno interpolated step recorded (the run ended before the stretch)",
                      fontsize=9)
        return
    a = np.asarray(ALPHAS)
    for _, r in steps.iterrows():
        t = r["step"]
        ax0.plot(t + a, r["losses"], "-", color="C0", lw=1.0, marker=".", ms=2.5)
        ax0.axvline(t, color="0.85", lw=0.5, zorder=0)
    fx = steps["step"] + steps["floor_alpha"]
    ax0.plot(fx, steps["floor_loss"], "--", color="C1", lw=1.2, label="valley floor")
    nb = int(np.nansum(steps["barrier"]))
    ax0.set(ylabel=r"training loss $\mathcal{L}(\theta_t^\alpha)$", title=title)
    ax0.legend(fontsize=7, title=f"{nb} barrier(s) crossed", title_fontsize=7)
    ax1.plot(steps["step"], steps["cos"], "-o", ms=2.5, color="C2")
    ax1.axhline(0, color="0.7", lw=0.5)
    ax1.set(ylabel=r"$\cos(g_{t-1}, g_t)$", ylim=(-1.05, 1.05))
    ax2.plot(steps["step"] + 1, steps["dist"], "-o", ms=2.5, color="C3")
    ax2.set(ylabel=r"$\|\theta_t - \theta_0\|_2$", xlabel="iteration $t$")
    return axes
