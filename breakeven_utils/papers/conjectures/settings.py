"""Notebook 2's settings (break-even paper Sec. 4.2, App. E-G): the profile's ``conjectures``
section, the maxima compared and the direction each conjecture predicts for them, the
symbols of the varied parameters, and how a sweep's name and values are read.

The paper's numbers the claims compare with are ``papers.common.BREAK_EVEN_PAPER_VALUES``
(keys (sweep, setting, quantity), with their sentences; notebook 1 shares the table).
"""

from __future__ import annotations

from breakeven_utils.core.profiles import get_profile
from breakeven_utils.papers.common import WINDOW

__all__ = ["settings", "PARAM_SYMBOL", "PARAM_SIGN", "QUANTITIES", "PREDICTIONS", "WINDOW",
           "param_from_name", "paper_number"]

#: the symbol of each varied parameter (common.VARIED) in the claims and legends
PARAM_SYMBOL = {"lr": "eta", "batch_size": "S", "momentum": "beta"}

#: per maximum: (metric column, conjecture, direction of its predicted change as eta or beta
#: grows: -1 decreases, +1 increases; a larger S acts like a smaller eta, name)
QUANTITIES = {
    "max_lambda_K_1": ("lambda_K_1", "1", -1, "lambda_K^1"),
    "max_lambda_H_1": ("lambda_H_1", "1", -1, "lambda_H^1"),
    "max_lambda_K_ratio": ("lambda_K_ratio", "2", +1, "lambda_K^*/lambda_K^1"),
    "max_trace_K": ("trace_K", "2", -1, "Tr(K)"),
}
#: per maximum: (conjecture, predicted direction as eta or beta grows)
PREDICTIONS = {q: (conj, sign) for q, (_c, conj, sign, _n) in QUANTITIES.items()}

#: how each parameter acts: growing eta or beta as eta grows (+1), growing S as eta shrinks (-1)
PARAM_SIGN = {"lr": +1, "momentum": +1, "batch_size": -1}


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``conjectures`` section and ``overrides``."""
    return get_profile(profile, section="conjectures", **overrides)


def param_from_name(name: str) -> str:
    """The parameter a sweep varies, from its name's suffix: ``*_eta`` (lr), ``*_S``
    (batch_size), ``*_beta`` (momentum); ValueError otherwise."""
    for suffix, p in (("_eta", "lr"), ("_S", "batch_size"), ("_beta", "momentum")):
        if name.endswith(suffix):
            return p
    raise ValueError(f"cannot tell the varied parameter of sweep {name!r}; pass param_of")


def paper_number(v):
    """A sweep value as the keys of ``common.BREAK_EVEN_PAPER_VALUES`` write it: an int for an
    integral value >= 2 (a batch size), else a float."""
    f = float(v)
    return int(f) if f.is_integer() and f >= 2 else f
