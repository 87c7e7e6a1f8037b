# ruff: noqa: E501  (the paper's sentences)
"""DNN's Sharpest Directions Along the SGD Trajectory: the sentences notebook 5 tests, and the
paper's claims no notebook tests, with why (``ABSENT``)."""

from __future__ import annotations

from breakeven_utils.reporting.claims import Absence, cite

__all__ = ["QUOTES", "ABSENT"]

_FIG3 = cite("Sec. 3.1, Fig. 3", "We observe in this figure that a larger learning rate or a smaller batch-size correlates with a smaller and earlier peak of the spectral norm and the subsequent largest eigenvalue.")

#: (pattern searched in "figure | claim", the sentence the row tests), first match wins.
QUOTES = (
    (r"grow in the first epochs up to a peak",
     cite("Sec. 3.1, Fig. 2", "the spectral norm (which corresponds to the largest eigenvalue), as well as the other tracked eigenvalues, grows in the first epoch up to a maximum value. After reaching this maximum value, we observe a relatively steady decrease of the largest eigenvalues for the SimpleCNN model, and a stabilization for the Resnet-32 model.")),
    (r"^Fig\. 3 \|", _FIG3),
    (r"Along e1 the SGD step is too large",
     cite("Sec. 3.2, Fig. 4", "We find that E[L(θ(t) − αηg̃_1(t))] − L(θ(t)) increases relative to L(θ(t)) for α > 1, and decreases for α < 1.")),
    (r"narrow bowl",
     cite("Sec. 3.2, Fig. 4", "We also observe that the bowl-like structure around the current parameter estimate appears to be relatively “narrow” compared to the average SGD step-size. ... For SimpleCNN and Resnet-32 the average k_min that lead to a change of 1% (10%) was 3.36 (5.52) and 1.56")),
    (r"\"SGD no top\"",
     cite("Sec. 3.3, Fig. 5", "if we remove the top eigenvector gradient projection from the gradient, the loss is reduced in a similar manner as by vanilla SGD but the spectral norm continues to increase")),
    (r"\"SGD top\"",
     cite("Sec. 3.3, Fig. 5", "taking gradient paths only along the top eigenvalue direction increases the loss, whilst decreasing the spectral norm. This means this SGD variant is finding wider regions compared to standard SGD but is not decreasing the loss.")),
    (r"Rescaling eta along e1 by gamma",
     cite("Sec. 3.3, Fig. 5", "this SGD variant with γ < 1 (orange and blue in the figure) moved to regions corresponding to larger ρ(H). Conversely, variants corresponding to γ > 1 (red and purple in the figure) moved to regions corresponding to lower ρ(H) very quickly.")),
    (r"^Table 3 \| NSGD with gamma < 1",
     cite("App. C, Table 3", "We find that the general conclusions are the same: NSGD can be effectively steered towards a sharp minima or wide minima by just adjusting the γ parameter")),
    (r"NSGD with gamma < 1 .* sharper regions than gamma = 1",
     cite("Sec. 4, Table 1", "While NSGD using γ < 1 results in finding an order of magnitude sharper minima, we observe that the generalization performance of the corresponding model is not reduced.")),
    (r"^Table 3 \| gamma < 1 keeps test accuracy",
     cite("App. C, Table 3", "importantly is able to find a well generalizing sharp minimum.")),
    (r"gamma < 1 keeps test accuracy|gamma < 1: equal or better",
     cite("Sec. 4", "For the most experiments, the validation performance was not affected by finding an order of magnitude sharper final minima. Additionally, finding a wider minima correlated with worse validation performance")),
    (r"rho\(H\) decays after the learning rate",
     cite("App. D, Fig. 15", "We observe that, in these experiments, ρ(H) seems to decay after the decrease of learning rate. ... However, we observed in other experiments, omitted here for clarity, that after the decrease of learning rate the spectral norm can start to grow again.")),
    (r"larger momentum gives a smaller peak",
     cite("Sec. 3.1; App. E, Fig. 16", "Additionally we found that momentum has an analogous effect – using a larger momentum led to a smaller peak of spectral norm, see Fig. 16 in the Supplement.")),
)

_P = "sharpest"
ABSENT = (
    Absence(_P, "3.1", "Fig. 3", "the peak of rho(H) over eta and S for an LSTM on PTB",
            cite("Sec. 3.1, Fig. 3", "Evolution of the two largest eigenvalues of the Hessian for Resnet-32, SimpleCNN, VGG11 and LSTM (trained on the PTB dataset) models"),
            "LSTM on PTB: a language model on text data, not in the offline data nor in this project's model zoo; a user can add it as a plugin run family"),
    Absence(_P, "3.3", "Fig. 5", "SGD along the constant initial top eigenvector changes neither the loss nor rho(H)",
            cite("Sec. 3.3, Fig. 5", "The updates in the fixed direction (corresponding to the top eigenvector in the first epoch) made by variant 2 (green) neither affect loss nor spectral norm, even in the beginning"),
            "'neither affect' is a null result with no stated tolerance; the variant is not in the run plan (it would need the rule 'sgd_constant_top')"),
    Absence(_P, "4", "Table 1", "a smaller gamma slightly reduces the distance travelled from the initialisation",
            cite("Sec. 4, Table 1", "Finally, we found a smaller γ to slightly reduce the overall distance traveled from the initialization, see Tab. 1 (fifth column)."),
            "the distance column is recorded in the NSGD tables but not judged: 'slightly' gives no margin, and one run per gamma gives no spread"),
    Absence(_P, "4", "Sec. 4", "a lower eta along the sharpest directions speeds up early training",
            cite("Sec. 4", "Additionally, we observed some benefit of using a lower η along the sharpest directions, as in all experiments initial training speed was improved."),
            "training curves are drawn (Fig. 6) but not judged: the paper gives no measure of 'initial training speed'"),
    Absence(_P, "4", "Table 2", "NSGD on CIFAR-100 reaches sharper minima with similar generalization",
            cite("Sec. 4", "Similar conclusions hold for experiments on the CIFAR-100 dataset and for SGD using momentum, as shown in Supplement C."),
            "CIFAR-100 is not in the offline data; the paper profile runs it where the data is present"),
    Absence(_P, "3.2", "Sec. 3.2", "the same bowl along the 3rd eigenvector and with batch normalization",
            cite("Sec. 3.2", "We observe a similar phenomena happening along the 3rd eigenvector. Also, similar results hold for different η, and when training with Batch Normalization."),
            "the probes follow e1 only, on models without batch normalization (as the paper's main figures)"),
)
