"""breakeven_utils: a notebook-first, reproducible companion to three papers on how SGD
shapes the loss surface early in training (the break-even point, the sharpest
directions along the SGD trajectory, A Walk with SGD).

Layers, each importing only those below it (``pyproject.toml [tool.importlinter]``)::

    papers     one package per notebook (registry, common preamble)
    reporting  claims and verdict rules, ledger, tables, manifest, figures
    store      run store, sweeps, executors, cost plan, progress
    recorder   RunConfig, update rules, schedules, metrics, the training loop
    curvature  Hessian / K operators and their estimators (Lanczos, trace, density)
    core       parameters, devices, data, models, profiles, atomic files
"""
__version__ = "0.1.0"
