# ruff: noqa: E501  (the papers' sentences)
"""The break-even paper's sentences notebook 3 tests (Sec. 4.3, App. H), and the claims of those
sections no notebook tests, with why (``ABSENT``)."""

from __future__ import annotations

from breakeven_utils.reporting.claims import Absence, cite

__all__ = ["QUOTES", "ABSENT"]

#: (pattern searched in "figure | claim", the sentence the row tests), first match wins.
QUOTES = (
    (r"^Fig\. 7 \| Conj\.",
     cite("Sec. 4.3, Fig. 7", "We test η ∈ {0.001, 0.01, 0.1, 1.0} ... We observe that the evolution of λ_K^*/λ_K^1 and λ_K^1 is consistent with both Conjecture 1 and Conjecture 2.")),
    (r"^Fig\. 26 \| Conj\.",
     cite("App. H, Fig. 26", "On the whole, conclusions from Sec. 4.3 carry over to this setting in the sense that decreasing the batch size has a similar effect on the studied metrics as increasing the learning rate.")),
    (r"max lambda_K\^1: SimpleCNN-BN at small eta",
     cite("Sec. 4.3", "We compare two settings: SimpleCNN-BN optimized with η = 0.001, and SimpleCNN optimized with η = 0.01. ... Second, the maximum and minimum values of λ_K^1 are 12.05 and 3.30, respectively.")),
    (r"max lambda_K\^\*/lambda_K\^1: SimpleCNN-BN at small eta",
     cite("Sec. 4.3", "Finally, λ_K^*/λ_K^1 reaches 0.343 in the first setting, and 0.24 in the second setting.")),
    (r"\|\|g\|\|/\|\|g_5\|\| of SimpleCNN-BN at small eta",
     cite("Sec. 4.3", "First, the maximum and minimum values of ||g||/||g_5|| are 1.90 (1.37) and 2.02 (1.09), respectively.")),
    (r"max \|\|g\|\|/\|\|g_5\|\| of SimpleCNN-BN at eta=",
     cite("Sec. 4.3", "Comparing these differences to differences that are induced by using the highest η = 1.0 in SimpleCNN-BN, we can conclude that using a large learning rate is necessary to observe the effect of loss smoothing which was previously attributed to batch normalization alone")),
    (r"is better conditioned than SimpleCNN",
     cite("Sec. 4.3, Summary", "using a high learning rate is necessary in a network with batch normalization layers to improve conditioning of the loss surface, compared to conditioning of the loss surface in the same network without batch normalization layers.")),
    (r"initially decrease \|\|gamma\|\|",
     cite("Sec. 4.3, Fig. 7", "It is visible that η = 1.0 and η = 0.1 initially decrease the value of ||γ||")),
    (r"starts high and decays",
     cite("Sec. 4.3, Fig. 7", "training of SimpleCNN-BN starts in a region characterized by a relatively high λ_K^1. ... The value of λ_K^1 then decays for all but the lowest η.")),
    (r"S=\d+(\.\d+)?:? (is the exception|max)",
     cite("App. H, Fig. 26", "One exception is the experiment using the smallest batch size of 10. In this case, the maximum values of ||g||/||g_5|| and λ_K^*/λ_K^1 are smaller than in the experiments using larger batch sizes.")),
    (r"without BN diverges",
     cite("Sec. 4.3", "We test η ∈ {0.001, 0.01, 0.1, 1.0} (using η = 1.0 leads to divergence of SimpleCNN without BN).")),
)

_P = "break_even"
ABSENT = (
    Absence(_P, "4.3", "Sec. 4.3", "reducing ||gamma|| is one of the mechanisms by which a high eta steers BN nets to better conditioned regions",
            cite("Sec. 4.3", "which we hypothesize to be one of the mechanisms due to which high η steers optimization towards better conditioned regions of the loss surface in batch-normalized networks."),
            "a hypothesis the paper states without testing it; the observation it rests on (||gamma|| falls early for eta = 1.0 and 0.1) is a row"),
    Absence(_P, "4.3", "Sec. 4.3", "a high learning rate is necessary for good generalization with BN",
            cite("Sec. 4.3", "This might be directly related to the result that using a high learning rate is necessary to achieve good generalization when using batch normalization layers (Bjorck et al., 2018)."),
            "a result of other work the paper cites, not one it measures"),
)
