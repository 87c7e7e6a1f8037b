"""DNN's sharpest directions along the SGD trajectory (Jastrzebski, Kenton, Ballas, Fischer,
Bengio, Storkey, 2018; ICLR 2019 as "On the Relation Between the Sharpest Directions of DNN
Loss and the SGD Step Length"), Sec. 3-4, App. D-E: the top Hessian eigenvalues along
training, the loss along the sharpest direction, SGD restricted to / cleared of the top
eigenvector, and Nudged SGD (notebook ``05_sharpest_directions_nsgd``).

``settings`` (the profile's section, the paper's numbers), ``sharpest`` (top-K eigenpairs
with the L2 term, the Fig. 4 probes, rho(W); the recorder metrics ``hessian_top``,
``sharpest_probe``, ``rho_W``), ``rules`` (Nudged SGD and the "top" variants as recorder
update rules), ``plugins`` (registers those metrics and rules: an entry point), ``runs``
(every run, grouped by figure and table), ``analysis`` (Tables 1 and 3, refresh logs, probe
averages), ``claims`` and ``figures``.
"""
