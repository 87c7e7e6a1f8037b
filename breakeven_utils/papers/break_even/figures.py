"""Notebook 1's figures (break-even paper Sec. 4.1, App. C): the files it saves, and where
each claim's evidence is. The drawing itself is ``reporting.plotting``'s (trajectory maps,
scatter plots, spectra)."""

from __future__ import annotations

__all__ = ["FIGURES", "FIG2", "FIG3", "FIG_EQ1", "FIG9"]

#: the notebook's figure files (without extension), by the paper's figure
FIGURES = {"fig1": "fig1_umap_lambda_k", "fig8": "fig8_umap_ratio_trace_lambda_h",
           "fig2": "fig2_lambda_h_delta_loss_vs_lambda_k", "fig3": "fig3_spectra_k_h",
           "eq1": "break_even_point_eq1", "fig9": "fig9_lambda_k_m128_vs_m1"}

#: (paper section, figure, figure file) of the claims: Fig. 2 (claims a-c), Fig. 3 (d), the
#: break-even point of Eq. (1) (e), Fig. 9 (App. C)
FIG2 = ("4.1", "Fig. 2", FIGURES["fig2"] + ".png")
FIG3 = ("4.1", "Fig. 3", FIGURES["fig3"] + ".png")
FIG_EQ1 = ("3, Theorem 1", "Eq. (1)", FIGURES["eq1"] + ".png")
FIG9 = ("App. C", "Fig. 9", FIGURES["fig9"] + ".png")
