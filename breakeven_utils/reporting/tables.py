"""Writing tables: every figure folder's tables as CSV (full precision) and Markdown.

File names are plain names checked by :func:`check_name`, written atomically
(``core.io``) so ``make reproduce`` overwrites the same files and git shows what
changed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from breakeven_utils.core.io import atomic_write, atomic_write_text
from breakeven_utils.core.tables import to_markdown

__all__ = ["PLAIN_NAME", "check_name", "save_table", "to_markdown"]

#: a file or folder name the outputs accept: letters, digits, _ . - (no directories)
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def check_name(name: str, suffixes: tuple[str, ...]) -> str:
    """A plain file name (letters, digits, _ . -) without the given suffixes; ValueError otherwise."""
    name = str(name)
    for suf in suffixes:  # tolerate 'fig1.png' -> 'fig1'
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
    if not PLAIN_NAME.match(name):
        raise ValueError(f"file name {name!r} must be a plain name (letters, digits, _ . -), no directories")
    return name


def save_table(df: pd.DataFrame, name: str, outdir: str | os.PathLike, *,
               float_format: str = "{:.4g}") -> list[Path]:
    """Write ``outdir/name.csv`` (full precision) and ``outdir/name.md`` atomically."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"save_table needs a pandas DataFrame, got {type(df).__name__}")
    name = check_name(name, (".csv", ".md"))
    outdir = Path(outdir)
    keep_index = not isinstance(df.index, pd.RangeIndex) or df.index.name is not None
    csv_path = atomic_write(outdir / f"{name}.csv",
                            lambda tmp: df.to_csv(tmp, index=keep_index, lineterminator="\n"))
    md_path = atomic_write_text(outdir / f"{name}.md", to_markdown(df, float_format=float_format,
                                                                  index=keep_index))
    return [csv_path, md_path]
