"""Curvature of the training loss and gradient noise: the measurements the papers make
on a network at given parameters.

* ``operators``: the Hessian of the mean loss over a measurement set as a linear
  operator (:class:`HessianOperator`: ``matvec``, ``dim``, ``n_matvec``,
  ``to_scipy()``), the L2 term (:class:`DiagonalOperator`) and their sums
  (``H + L2``), plus the measurement context (``measurement_mode``, ``bn_mode``).
* ``lanczos``: the one Lanczos kernel (full reorthogonalisation) behind the top-k
  solver and the spectral density.
* ``eigs``, ``trace``, ``density``: top-k eigenpairs, Hutchinson's trace and the
  stochastic-Lanczos-quadrature density, each a function of an operator
  (``top_eigenpairs``, ``hutchinson_trace``, ``slq_density``) and a wrapper on the
  Hessian of a model (``hessian_eigs``, ``hessian_trace``, ``hessian_density``).
* ``per_example``: per-example curvature v^T H_i v (break-even paper, Eq. (1)) and
  per-example gradients.
* ``gradient_noise``: the gradient covariance K and its Gram estimate (break-even
  paper, App. C).
"""
from breakeven_utils.curvature.density import SpectralDensity, hessian_density, slq_density
from breakeven_utils.curvature.eigs import (
    HessianEigs,
    NotConvergedError,
    frobenius_from_top,
    hessian_eigs,
    ordered_eigs,
    top_eigenpairs,
)
from breakeven_utils.curvature.gradient_noise import (
    GradientCovariance,
    gradient_covariance,
    gradient_norm_ratio,
    minibatch_gradient,
)
from breakeven_utils.curvature.lanczos import Lanczos, lanczos_topk, lanczos_tridiagonal, select
from breakeven_utils.curvature.operators import (
    BN_MODES,
    HVP_METHODS,
    CurvatureOperator,
    DiagonalOperator,
    HessianOperator,
    MatvecBudgetExceeded,
    SumOperator,
    as_batches,
    check_bn_mode,
    hvp,
    hvp_operator,
    measurement_mode,
)
from breakeven_utils.curvature.per_example import per_example_curvature, per_example_gradients
from breakeven_utils.curvature.trace import TraceEstimate, hessian_trace, hutchinson_trace

__all__ = [
    # operators
    "BN_MODES", "HVP_METHODS", "check_bn_mode", "measurement_mode", "as_batches",
    "CurvatureOperator", "HessianOperator", "DiagonalOperator", "SumOperator",
    "MatvecBudgetExceeded", "hvp", "hvp_operator",
    # Lanczos
    "Lanczos", "lanczos_topk", "lanczos_tridiagonal", "select",
    # estimators
    "HessianEigs", "NotConvergedError", "top_eigenpairs", "hessian_eigs", "ordered_eigs",
    "frobenius_from_top",
    "TraceEstimate", "hutchinson_trace", "hessian_trace",
    "SpectralDensity", "slq_density", "hessian_density",
    "per_example_curvature", "per_example_gradients",
    # gradient noise
    "GradientCovariance", "gradient_covariance", "minibatch_gradient", "gradient_norm_ratio",
]
