"""Tables as GitHub-flavoured Markdown: the one renderer behind the plan, the
figures' tables, the claims tables and the ledger (no ``tabulate`` dependency)."""
from __future__ import annotations

import math

import pandas as pd

__all__ = ["to_markdown", "format_cell"]


def format_cell(v, float_format: str) -> str:
    """One Markdown cell: floats through ``float_format``, None/NaN empty, pipes escaped."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        s = float_format.format(v)
    else:
        s = str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pd.DataFrame, *, float_format: str = "{:.4g}", index: bool = False) -> str:
    """Small GitHub-flavoured Markdown table renderer (no `tabulate` dependency)."""
    if index:
        df = df.reset_index()
    header = [format_cell(c, float_format) for c in df.columns]
    rows = [[format_cell(v, float_format) for v in row] for row in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns] if len(df.columns) else []
    widths = [max([len(header[j]), 3] + [len(r[j]) for r in rows]) for j in range(len(header))]

    def line(cells):
        out = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "| " + " | ".join(out) + " |"

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w
                            for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(header), sep] + [line(r) for r in rows]) + "\n"
