"""The progress bar class for the context a run is watched in: ipywidgets bars in an
interactive notebook (``tqdm.auto``), plain text where the notebook is executed headless
(``BREAKEVEN_PROGRESS=text``, set by ``scripts/reproduce.py`` and
``scripts/build_notebooks.py``), so a committed executed notebook carries readable text,
not widget views whose state papermill does not save."""
from __future__ import annotations

import os

from tqdm import std as _std
from tqdm.auto import tqdm as _auto

__all__ = ["tqdm", "write"]


def _cls():
    return _std.tqdm if os.environ.get("BREAKEVEN_PROGRESS", "").lower() == "text" else _auto


def tqdm(*args, **kwargs):
    """``tqdm.auto.tqdm``, or ``tqdm.std.tqdm`` when ``$BREAKEVEN_PROGRESS`` is ``text``."""
    return _cls()(*args, **kwargs)


def write(line: str, **kwargs) -> None:
    """A line printed above the bars of the same class (``tqdm.write``)."""
    _cls().write(line, **kwargs)
