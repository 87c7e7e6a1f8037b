"""The break-even paper (Jastrzebski et al., ICLR 2020), Sec. 4.2, App. E, F, G: the two
conjectures over the learning rate eta, the batch size S and the momentum beta (notebook
``02_conjectures``).

Conjecture 1 (variance reduction): along the SGD trajectory the maximum lambda_K^1 and
lambda_H^1 are smaller for a larger eta or a smaller S (App. F: a larger beta). Conjecture 2
(pre-conditioning): the maximum lambda_K^*/lambda_K^1 is larger, and the maximum Tr(K)
smaller, for a larger eta or a smaller S.

``settings`` (the profile's section, the quantities and their predicted directions),
``runs`` (the sweeps: ``common.Sweep`` objects of RunConfigs), ``analysis`` (smoothed maxima
per setting with their standard errors), ``claims`` (per sweep, whether each predicted
ordering holds beyond the noise) and ``figures`` (the figure files the notebook saves and
the claims link). The paper's numbers are ``papers.common.BREAK_EVEN_PAPER_VALUES`` (shared
with ``break_even``). No update rule or metric of its own: every metric it records is built
into the recorder.
"""
