"""A Walk with SGD (Xing, Arpit, Tsirigotis, Bengio, 2018; arXiv:1802.08770), Sec. 3-6:
the loss between consecutive iterates, barriers, the height above the valley floor,
gradient cosines, GD with isotropic noise, learning-rate schedules and the quadratic of
Sec. 6 (notebook ``04_walk_with_sgd``).

``settings`` (the profile's section, validation, the paper's numbers), ``measures`` (the
paper's definitions: interpolation losses, barrier, valley floor, height, the mini-batch
gradient variance, the quadratic; the recorder metrics ``walk_interp`` / ``walk_step`` and
the rule ``gd_noise_minibatch``), ``plugins`` (registers those with the recorder: an entry
point), ``runs`` (the RunConfigs of every experiment, ``run_all``), ``analysis`` (per step,
per epoch and per experiment summaries), ``claims`` (the claims table) and ``figures`` (the
paper's three-panel walk plot); ``costs`` (what its metrics cost, for the plan).
"""

from breakeven_utils.papers.walk import costs

costs.attach()
