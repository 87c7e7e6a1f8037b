"""The run store and what runs on it: every trajectory computed once and kept by its
configuration (``runs``: run, load, state_at, status), sweeps over many (``sweeps``),
where they execute (``executors``: local pool, SLURM, Dask), what they will cost
(``plan``) and how far along they are (``progress``). Imports ``core``, ``curvature``
and ``recorder``."""
