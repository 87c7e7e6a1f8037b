# ruff: noqa: E501  (the paper's sentences)
"""A Walk with SGD: the sentences notebook 4 tests, and the paper's claims no notebook tests,
with why (``ABSENT``)."""

from __future__ import annotations

from breakeven_utils.reporting.claims import Absence, cite

__all__ = ["QUOTES", "ABSENT"]

#: (pattern searched in "figure | claim", the sentence the row tests), first match wins.
QUOTES = (
    (r"SGD moves farther from theta_0 than GD",
     cite("Sec. 3.1", "We see that the distance after 40 iterations is ~ 1.7, which is larger than the distance moved by GD. ... For all architectures, SGD travels farther than full batch gradient descent")),
    (r"GD's cos\(g_\{t-1\}, g_t\) goes to about -1",
     cite("Sec. 3.1, Fig. 1", "the cosine of the angle between consecutive gradients after iteration 15 is going negative and finally very close to -1, which means the consecutive gradients are almost along opposite directions.")),
    (r"almost never crosses a barrier",
     cite("Sec. 3.1, Table 1; Sec. 6", "As we see, no barriers are crossed for most parts of the training. ... we find that SGD almost never crosses any significant barriers along its path.")),
    (r"height above the valley floor falls over training",
     cite("Sec. 5", "We observe from table 2 that the optimization oscillates at a lower height as training progresses")),
    (r"larger learning rate keeps SGD higher",
     cite("Sec. 3.2, Table 2", "They show that for almost all epochs, a smaller learning rate leads to a smaller height from the valley floor.")),
    (r"interpolation between consecutive iterates is valley-shaped",
     cite("Sec. 1, contribution 2", "We observe that the loss interpolation between parameters before and after a training update is roughly convex with a minimum (valley floor) in between.")),
    (r"larger batch size makes cos",
     cite("Sec. 3.2, Fig. 4", "Notice the cosine is significantly more negative for larger batch sizes")),
    (r"batch size changes cos.* more than the learning rate",
     cite("Sec. 3.2, Fig. 4", "changing the batch size gradually (keeping the learning rate fixed) changes cos(g_{t-1}, g_t), while changing the learning rate gradually (keeping batch size fixed) does not.")),
    (r"isotropic noise plateaus at a higher training loss",
     cite("Sec. 4, Fig. 5", "Models trained using GD with added isotropic noise get stuck in terms of training loss and have worse validation performance compared with the model trained with GD.")),
    (r"isotropic noise reaches a worse validation accuracy",
     cite("Sec. 4", "we can see that adding even a small isotropic noise makes both the convergence and generalization worse compared with the model trained with GD.")),
    (r"isotropic noise ends with much larger parameter norms",
     cite("Sec. 4", "The parameter norms are 87 and 82 for GD and SGD respectively, and 369 and 443 for the 0.014 and 0.028 isotropic variance case. ... the fact that isotropic noise solutions have much larger norms and get stuck suggests that isotropic noise both hinders optimization and is bad for generalization.")),
    (r"SGD ends with a smaller parameter norm than GD",
     cite("Sec. 4", "The parameter norms are 87 and 82 for GD and SGD respectively ... These numbers corroborate the generally discussed notion that SGD finds solutions with small ℓ^2 norm (Zhang et al., 2016) compared with GD")),
    (r"trapezoid schedule is similar to or better than CLR",
     cite("Sec. 5, Fig. 6", "We now empirically show that multiple cycles of CLR are redundant, and simply increasing the learning rate until a certain point, and then annealing it leads to similar or better performance.")),
    (r"Trapezoid and CLR are slightly better than step",
     cite("Sec. 5", "For fairness, we also plot the widely used step-wise learning rate annealing schedule. In our experiments, we find that methods which increase learning rate during training may be considered slightly better.")),
    (r"lambda_H\^1 decreases as training progresses",
     cite("Sec. 3.1, Fig. 3", "We find that the spectral norm reduces as training progresses (hence SGD finds flatter regions) but starts increasing towards the end.")),
)

_P = "walk"
ABSENT = (
    Absence(_P, "3.1, 3.2", "Fig. 20, 21, 24", "the GD/SGD interpolations and the batch-size/learning-rate roles on VGG-11 with Tiny-ImageNet",
            cite("Sec. 3.2", "The same experiment verifying the roles of learning rate and batch size is also conducted on Resnet-56 with CIFAR-10, MLP with MNIST and VGG-11 with tiny ImageNet."),
            "needs Tiny-ImageNet, which is not in the offline data (CIFAR-10 and Fashion-MNIST); a user with the data can add it as a data set"),
    Absence(_P, "3.1", "Fig. 1", "GD's valley floor falls (almost) monotonically, while SGD's goes up and down",
            cite("Sec. 3.1, Fig. 1", "Thus we see that for GD, the floor is reducing almost monotonously. As we will see, this is not the case with SGD"),
            "the floors are drawn (Fig. 1, 2) but not judged: 'almost monotonously' has no stated tolerance for the floor's ups and downs"),
    Absence(_P, "3.2", "Fig. 4", "a smaller batch travels farther from the initialisation",
            cite("Sec. 3.2", "This behavior is verified by the smaller distance of parameters from initialization during training for larger batch size"),
            "the cosine sweep records the distance from theta_0 of each batch size but no row judges it yet; the runs differ in steps per epoch, and the paper gives no horizon"),
    Absence(_P, "4", "Fig. 5", "GD with isotropic noise travels farther from the initialisation than GD (and than SGD)",
            cite("Sec. 4", "The parameter distance from initialization shows that models trained with isotropic noise travel farther away compared with the model trained using noiseless GD."),
            "distances are drawn in Fig. 5 but not judged; the final parameter norms, judged in their own row, carry the same comparison"),
    Absence(_P, "4", "Footnote 7", "the noise runs stay stuck when the learning rate is reduced or GD resumes, and escape with SGD",
            cite("Sec. 4, footnote 7", "neither reducing learning rate, nor switching to GD at this point leads to reduction in training loss. However, switching to SGD makes the loss go down."),
            "needs a second phase of training after the plateau with three different rules; not part of the run plan"),
    Absence(_P, "4", "Sec. 4", "the Hessian and the gradient covariance are almost equal near minima",
            cite("Sec. 4", "Thus we find that the Hessian and covariance at any point θ are related, and are almost equal near minima where the second term tends to zero. Although we do not empirically confirm this"),
            "a derivation the paper does not test empirically"),
)
