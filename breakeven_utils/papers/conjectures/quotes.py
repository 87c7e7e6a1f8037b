# ruff: noqa: E501  (the papers' sentences, kept whole per line where they fit the reader better)
"""The break-even paper's sentences notebook 2 tests (Sec. 3 Conjectures 1-2, Sec. 4.2, App. E-G),
and the claims of those sections no notebook tests, with why (``ABSENT``)."""

from __future__ import annotations

from breakeven_utils.reporting.claims import Absence, cite

__all__ = ["QUOTES", "ABSENT"]

_CONJ1 = cite("Sec. 3, Conjecture 1", "Along the SGD trajectory, the maximum attained values of λ_H^1 and λ_K^1 "
              "are smaller for a larger learning rate or a smaller batch size.")
_CONJ2 = cite("Sec. 3, Conjecture 2", "Along the SGD trajectory, the maximum attained values of λ_K^*/λ_K^1 and "
              "λ_H^*/λ_H^1 are larger for a larger learning rate or a smaller batch size ... Furthermore, the "
              "maximum attained values of Tr(K) and Tr(H) are smaller for a larger learning rate or a "
              "smaller batch size.")

#: (pattern searched in "figure | claim", the sentence the row tests), first match wins.
QUOTES = (
    (r"^Fig\. 4 \| Conjecture 1: .*lambda_K\^1 is smaller for a larger eta",
     cite("Sec. 4.2, Fig. 4", "As visible in Fig. 4, using a higher η results in λ_K^1 achieving a lower "
          "maximum during training.")),
    (r"^Fig\. 4 \| Conjecture 1: .*lambda_K\^1 is larger for a larger S",
     cite("Sec. 4.2, Fig. 4", "Similarly, we observe that using a higher S in SGD leads to reaching a higher "
          "maximum value of λ_K^1.")),
    (r"^Fig\. 4 \| Conjecture 2: .*lambda_K\^\*/lambda_K\^1 is larger for a larger eta",
     cite("Sec. 4.2, Fig. 4", "It is visible in Fig. 4 that using a higher η results in reaching a larger "
          "maximum value of λ_K^*/λ_K^1 along the trajectory.")),
    (r"^Fig\. 4 \| Conjecture 2: .*lambda_K\^\*/lambda_K\^1",
     cite("Fig. 4 (caption)", "The optimization trajectories corresponding to higher learning rates (η) or "
          "lower batch sizes (S) are characterized by lower maximum λ_K^1 ... and larger maximum "
          "λ_K^*/λ_K^1")),
    (r"^Fig\. 5 \| Conjecture 1",
     cite("Sec. 4.2, Fig. 5", "we observe that using a smaller η or using a larger S coincides with a larger "
          "maximum value of λ_H^1.")),
    (r"^Fig\. 1[13] \| Conjecture 2: .*Tr\(K\)",
     cite("Sec. 4.2", "Consistently with Conjecture 2, we observe that the maximum value of Tr(K) is smaller "
          "for the smaller batch size.")),
    (r"^Fig\. 1[02] \| Conjecture 2: .*Tr\(K\)", _CONJ2),
    (r"^Fig\. 18 \|",
     cite("App. E, Fig. 18", "MLP on FashionMNIST. In Fig. 18 and Fig. 19 we report results for MLP model on "
          "the FashionMNIST dataset. We observe that all conclusions carry over to this setting.")),
    (r"^Fig\. 20 \|",
     cite("App. F, Fig. 20", "We can observe that Conjecture 1 and Conjecture 2 generalize to momentum in the "
          "sense that using a higher momentum has an analogous effect to using a higher learning rate, or "
          "using a smaller batch size in SGD.")),
    (r"^Fig\. 22 \|",
     cite("App. F, Fig. 22", "For all runs, we set momentum to 0.9. Learning rate 0.1 diverged training, so we "
          "include only 0.01 and 0.001. We can observe that both Conjectures generalize to this setting.")),
    (r"^Fig\. 24 \|",
     cite("App. G, Fig. 24", "We can observe that Conjecture 1 and Conjecture 2 generalize to scenario with "
          "learning rate schedule in the sense that changing learning rate does not change the relative "
          "ordering of the maximum λ_K^1 and λ_K^*/λ_K^1.")),
    (r"Conjecture 1", _CONJ1),
    (r"Conjecture 2", _CONJ2),
)

_P = "break_even"
_NOT_OFFLINE = "its data set is not in the offline data and the model is outside this project's model zoo"
ABSENT = (
    Absence(_P, "4.2", "Fig. 4, 14, 15", "Conjectures 1-2 for an LSTM on IMDB",
            cite("Sec. 4.2", "We summarize the results for SimpleCNN, ResNet-32, LSTM, BERT, and DenseNet in "
                 "Fig. 4, Fig. 5, and Fig. 6."),
            f"LSTM on IMDB: {_NOT_OFFLINE} (text models are not part of this CIFAR-10/Fashion-MNIST companion); "
            "a user with the data can add the sweep as a plugin run family"),
    Absence(_P, "4.2", "Fig. 6, 16", "Conjectures 1-2 for BERT fine-tuned on MNLI",
            cite("Sec. 4.2, Fig. 6", "Finally, we test the two conjectures in two larger scale settings: BERT "
                 "fine-tuned on the MNLI dataset, and DenseNet trained on the ImageNet dataset. ... We observe "
                 "that both conjectures hold in these two settings."),
            f"BERT on MNLI: {_NOT_OFFLINE}, and fine-tuning BERT needs GPU-days"),
    Absence(_P, "4.2", "Fig. 6, 17", "Conjectures 1-2 for DenseNet on ImageNet",
            cite("Sec. 4.2, Fig. 6", "We observe that both conjectures hold in these two settings."),
            f"DenseNet on ImageNet: {_NOT_OFFLINE}; ImageNet training needs GPU-weeks"),
    Absence(_P, "4.2", "Sec. 4.2", "lambda_K^1 and lambda_H^1 peak close to 60% training accuracy on CIFAR-10",
            cite("Sec. 4.2", "We find that λ_K^1 and λ_H^1 reach their highest values early in training, close "
                 "to reaching 60% training accuracy on CIFAR-10, and 75% training accuracy on IMDB."),
            "recorded, not judged: maxima.csv gives the training accuracy at each peak of lambda_K^1; 'close to' "
            "has no stated tolerance, and the cpu runs train on 5,000 images, where accuracy at a given "
            "step differs from the paper's 45,000"),
    Absence(_P, "3", "Conjecture 2", "the Hessian half of Conjecture 2: max lambda_H^*/lambda_H^1 and max Tr(H)",
            cite("Sec. 4.2", "We leave testing predictions made in Conjecture 2 about the Hessian for future "
                 "work."),
            "the paper does not test it either; lambda_H^* (the smallest non-zero eigenvalue of H) is not "
            "computable with the Lanczos top-k solver used here"),
)
