"""Notebook 2's figures (break-even paper Sec. 4.2, App. E-G): the files it saves (panels drawn
with ``reporting.plotting.curves``) and which figure shows each claim (:func:`claim_figure`)."""

from __future__ import annotations

__all__ = ["FIGURES", "TRACE_FIGURES", "claim_figure"]

#: Fig. 10-13: accuracy and Tr(K) of one sweep each, saved as ``fig<n>_<sweep>_acc_trace_k``
TRACE_FIGURES = {"simplecnn_eta": 10, "simplecnn_S": 11, "resnet32_eta": 12, "resnet32_S": 13}

#: the notebook's figure files (without extension), by the paper's figure
FIGURES = {
    "fig4": "fig4_lambda_k_ratio", "fig5": "fig5_lambda_h",
    **{f"fig{n}": f"fig{n}_{sweep}_acc_trace_k" for sweep, n in TRACE_FIGURES.items()},
    "fig18": "fig18_mlp_k_h", "fig19": "fig19_mlp_acc",
    "fig20": "fig20_momentum_beta_k", "fig21": "fig21_momentum_beta_acc",
    "fig22": "fig22_momentum_eta_k", "fig23": "fig23_momentum_eta_acc",
    "fig24": "fig24_decay_k", "fig25": "fig25_decay_acc",
}


def claim_figure(sweep: str, q: str) -> tuple[str, str, str]:
    """(paper section, figure, file name in the notebook's output folder) showing quantity ``q``
    (a key of ``settings.QUANTITIES``) of ``sweep``; the names notebook 2 saves its figures under."""
    fam = sweep.split("_")[0]
    if fam in ("simplecnn", "resnet32"):
        if q == "max_trace_K":
            n = TRACE_FIGURES.get(sweep, 10)
            return "4.2", f"Fig. {n}", f"fig{n}_{sweep}_acc_trace_k.png"
        if q == "max_lambda_H_1":
            return "4.2", "Fig. 5", FIGURES["fig5"] + ".png"
        return "4.2", "Fig. 4", FIGURES["fig4"] + ".png"
    if fam == "mlp":
        return "App. E", "Fig. 18", FIGURES["fig18"] + ".png"
    if sweep == "momentum_beta":
        return "App. F", "Fig. 20", FIGURES["fig20"] + ".png"
    if sweep == "momentum_eta":
        return "App. F", "Fig. 22", FIGURES["fig22"] + ".png"
    return "App. G", "Fig. 24", FIGURES["fig24"] + ".png"
