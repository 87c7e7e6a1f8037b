"""Notebook 1's settings (break-even paper Sec. 4.1, App. C): the profile's ``break_even``
section, the metrics its runs record, and the constants of its claims.

The paper's statements the claims compare with are ``papers.common.BREAK_EVEN_PAPER_VALUES``
(with their sentences; notebook 2 shares the table).
"""

from __future__ import annotations

from breakeven_utils.core.profiles import get_profile
from breakeven_utils.papers.common import WINDOW

__all__ = ["settings", "TRAJECTORY_METRICS", "FIG9_METRICS", "WINDOW", "SETTING"]

#: recorded along every trajectory (Sec. 4.1): accuracies, Delta L, lambda_H^1, the LHS of
#: Eq. (1), K (M = 128) and K1 (M = 1, App. C), the top-k of H, test-set predictions (Fig. 1)
TRAJECTORY_METRICS = ("train", "test", "delta_loss", "lambda_H", "breakeven_lhs", "K", "K1",
                      "H_spectrum", "softmax", "dist_init")
#: recorded by the extra runs of Fig. 9 (App. C): lambda_K^1 with M = 128 and M = 1
FIG9_METRICS = ("train", "K", "K1")

#: the default model and data label of the claims' setting column
SETTING = "SimpleCNN"


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``break_even`` section and ``overrides``."""
    return get_profile(profile, section="break_even", **overrides)
