"""What a reader sees: claim records and the verdict rules that judge them
(``claims``), the ledger of every claim (``ledger``), tables (``tables``), the
manifest and output folders (``manifest``), figures (``plotting``) and the UMAP
embedding of trajectories (``embedding``). Imports the layers below it; never names
a paper section."""
