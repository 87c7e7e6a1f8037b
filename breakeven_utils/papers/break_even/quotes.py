"""The break-even paper's sentences notebook 1 tests (Sec. 3, Sec. 4.1, App. C), and the claims
of those sections no notebook tests, with why (``ABSENT``, listed in the claims ledger)."""

from __future__ import annotations

from breakeven_utils.reporting.claims import Absence, cite

__all__ = ["QUOTES", "ABSENT"]

#: (pattern searched in "figure | claim", the sentence the row tests), first match wins.
QUOTES = (
    (r"\(a\) lambda_K\^1 and lambda_H\^1 are correlated",
     cite("Sec. 4.1, Fig. 2", "The key assumption behind our theoretical model is that λ_K^1 and λ_H^1 are "
          "correlated, at least prior to reaching the break-even point. We confirm this in Fig. 2.")),
    (r"\(b\) max lambda_[KH]\^1 is larger for the smaller",
     cite("Sec. 4.1, Fig. 2", "The highest achieved λ_K^1 and λ_H^1 are larger for the smaller η.")),
    (r"\(c\) Delta L",
     cite("Sec. 4.1, Fig. 2", "In Fig. 2 we observe that training becomes increasingly unstable (ΔL starts "
          "to take negative values) as λ_K^1 reaches the maximum value.")),
    (r"\(d\) .*outliers",
     cite("Sec. 4.1, Fig. 3", "We observe more outliers for the lower learning rate in the distributions "
          "of both λ_K and λ_H.")),
    (r"\(e\) the break-even point",
     cite("Sec. 3", "More generally, it can be shown that for η_1 [> η_2], the break-even point is reached "
          "for a lower magnitude of λ_H^1(t) than for η_2.")),
    (r"^Fig\. 9",
     cite("App. C, Fig. 9", "We estimate λ_K^1 using M = 1 and M = 128, in both cases using the whole "
          "training set. ... Fig. 9 shows a strong correlation between λ_K^1 computed with M = 1 and with "
          "M = 128, for three different learning rates.")),
)

_P = "break_even"
ABSENT = (
    Absence(_P, "4.1", "Fig. 1",
            "the lower eta reaches larger lambda_K^1 than the higher one at equal training accuracy",
            cite("Sec. 4.1, Fig. 1", "We observe that the trajectory corresponding to the lower learning "
                 "rate reaches regions of the loss surface characterized by larger λ_K^1, compared to "
                 "regions reached at the same training accuracy in the second trajectory."),
            "Fig. 1 is drawn (UMAP of the test-set predictions coloured by lambda_K^1 and accuracy) but not "
            "judged: matching the two runs at equal training accuracy needs accuracy measured at every "
            "lambda_K^1 point of both runs up to 65%, which the cpu runs do not reach for eta=0.01"),
    Absence(_P, "4.1", "Fig. 2",
            "after the maximum of lambda_H^1, further growth of lambda_K^1 does not raise lambda_H^1",
            cite("Sec. 4.1, Fig. 2", "Additionally, we observe that after achieving the highest value of "
                 "λ_H^1, further growth of λ_K^1 does not translate to an increase of λ_H^1."),
            "needs runs long past the maximum of lambda_H^1 with lambda_K^1 still growing; the cpu runs stop "
            "near the maxima (decided at the paper profile)"),
    Absence(_P, "3", "Sec. 3",
            "after the break-even point SGD does not enter regions with larger lambda_H^1 or lambda_K^1",
            cite("Sec. 3", "Under Assumption 4, after passing the break-even point on the training "
                 "trajectory, SGD does not enter regions where either λ_H^1 or λ_K^1 is larger than at the "
                 "break-even point"),
            "an assumption of the theoretical model, not an experimental result of the paper; its "
            "consequences are Conjectures 1-2 (notebook 2)"),
)
