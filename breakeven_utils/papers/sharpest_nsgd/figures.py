"""The sharpest-directions paper: helpers for notebook 5's figures (Fig. 2, 3, 7: the
top-k eigenvalues of ``hessian_top`` along a run)."""
from __future__ import annotations

__all__ = ["eig_columns"]


def eig_columns(metrics) -> list[str]:
    """The ``H_eig_1 .. H_eig_k`` columns (metric ``hessian_top``) of a run's metrics, in
    eigenvalue order (``H_eig_10`` after ``H_eig_9``)."""
    return sorted([c for c in metrics if c.startswith("H_eig_")], key=lambda c: int(c.split("_")[-1]))
