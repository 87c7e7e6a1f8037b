"""The break-even paper (Jastrzebski et al., ICLR 2020), Sec. 3, Sec. 4.1, App. A, C: the
break-even point along SGD trajectories of SimpleCNN (notebook ``01_break_even``).

``settings`` (the profile's section and the metrics recorded), ``runs`` (the RunConfigs:
trajectories per learning rate and seed, Fig. 9's runs), ``analysis`` (Eq. (1), break-even
points, outliers of the spectra, Fig. 9's correlations), ``claims`` (the claims table) and
``figures`` (the figure files the notebook saves and the claims link). The paper's numbers
are ``papers.common.BREAK_EVEN_PAPER_VALUES`` (shared with ``conjectures``). No update rule or
metric of its own: every metric it records is built into the recorder.
"""
