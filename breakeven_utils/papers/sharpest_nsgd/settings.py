"""The sharpest-directions paper (Jastrzebski et al. 2018; ICLR 2019 as "On the Relation
Between the Sharpest Directions of DNN Loss and the SGD Step Length"): notebook 5's
settings and the paper's numbers (``PAPER_VALUES`` with where each comes from;
``PAPER_KMIN`` / ``PAPER_ALPHA`` of Sec. 3.2)."""
from __future__ import annotations

from breakeven_utils.core.profiles import get_profile

__all__ = ["settings", "PAPER_VALUES", "PAPER_KMIN", "PAPER_ALPHA"]


def settings(profile: str = "smoke", **overrides) -> dict:
    """The profile's shared keys merged with its ``nsgd`` section and ``overrides``."""
    return get_profile(profile, section="nsgd", **overrides)


#: the paper's numbers (value, where it comes from)
PAPER_VALUES = {
    "kmin1_simplecnn": (3.36, "Sec. 3.2: average k_min for a 1% change, SimpleCNN"),
    "kmin10_simplecnn": (5.52, "Sec. 3.2: average k_min for a 10% change, SimpleCNN"),
    "kmin1_resnet32": (1.56, "Sec. 3.2: average k_min for a 1% change, ResNet-32"),
    "kmin10_resnet32": (4.08, "Sec. 3.2: average k_min for a 10% change, ResNet-32"),
    "alpha_simplecnn": ({0.25: -0.02, 0.5: -0.02, 2.0: 0.021, 4.0: 0.111},
                        "Sec. 3.2: alpha=2, 4 raise the loss by 2.1%, 11.1%; 0.25, 0.5 lower it ~2%"),
    "alpha_resnet32": ({0.25: -0.03, 0.5: -0.03, 2.0: 0.03, 4.0: 0.131},
                       "Sec. 3.2: alpha=2, 4 raise the loss by 3%, 13.1%; 0.25, 0.5 lower it ~3%"),
    # Table 1, SimpleCNN (bottom): gamma or SGD(eta) -> (||H||_F best/last10, test acc, val acc
    # (50), loss, dist, rho(W))
    "table1_simplecnn": ({
        "nsgd 0.01": ("307/422", 87.0, 82.8, 0.00761, 20.50, 60.06),
        "nsgd 0.1": ("126/248", 87.2, 82.7, 0.00206, 20.68, 60.20),
        "nsgd 1": ("8/12", 86.4, 81.5, 0.00252, 20.95, 60.38),
        "nsgd 10": ("54/1", 85.3, 74.9, 0.00330, 23.36, 63.52),
        "sgd 0.1": ("1/0", 87.9, 85.2, 0.00037, 62.53, 120.13),
        "sgd 0.005": ("45/35", 86.0, 77.6, 0.00937, 17.10, 55.55),
        "sgd 0.0025": ("149/183", 85.3, 71.8, 0.02454, 14.37, 52.39)}, "Table 1 (bottom)"),
    "table1_resnet32": ({
        "nsgd 0.01": ("483/1,559", 87.4, 58.3, 0.06067, 22.99, 159.81),
        "nsgd 0.1": ("350/816", 87.2, 57.0, 0.06128, 23.41, 161.42),
        "nsgd 1": ("103/121", 86.6, 54.0, 0.06443, 24.62, 166.47),
        "nsgd 10": ("54/19", 85.2, 43.8, 0.10194, 29.39, 187.77),
        "sgd 0.1": ("9/13", 89.7, 82.6, 0.10787, 34.90, 216.35),
        "sgd 0.005": ("278/511", 85.6, 41.7, 0.08392, 21.21, 147.17),
        "sgd 0.0025": ("683/1,190", 84.8, 30.9, 0.10304, 18.65, 131.73)}, "Table 1 (top)"),
    "table3_simplecnn": ({
        "nsgd 0.01": ("36/51", 88.7, 86.8, 0.00016, 60.38, 118.42),
        "nsgd 1": ("1/1", 88.4, 86.3, 0.00011, 60.77, 118.71),
        "nsgd 5": ("0/0", 88.5, 85.6, 0.00098, 63.12, 120.86)}, "Table 3 (bottom), momentum 0.9"),
    "table3_resnet32": ({
        "nsgd 0.01": ("94/185", 90.2, 86.9, 0.09854, 36.10, 231.06),
        "nsgd 1": ("20/28", 90.0, 84.9, 0.10232, 35.95, 228.01),
        "nsgd 5": ("0/0", 89.6, 82.0, 0.11102, 35.12, 217.69)}, "Table 3 (top), momentum 0.9"),
}


PAPER_KMIN = {"simplecnn": (3.36, 5.52), "resnet32": (1.56, 4.08)}

PAPER_ALPHA = {"simplecnn": {0.25: -0.02, 0.5: -0.02, 2.0: 0.021, 4.0: 0.111},
               "resnet32": {0.25: -0.03, 0.5: -0.03, 2.0: 0.03, 4.0: 0.131}}
