"""One claims ledger for the three papers and the verdict rules every notebook shares.

A :class:`Claim` is one row: which paper, section and figure/table make the
claim, the claim in one sentence, the setting it was tested in, the paper's
number, ours, and a verdict in :data:`VERDICTS` with its reason.
``save_claims`` writes ``claims.csv`` (every field) and ``claims.md`` (the
compact table claim | setting | paper | ours | verdict | reason); the wide
per-setting numbers behind the claims stay a separate data table
(``reporting.tables.save_table``).

Verdict rules:

- maxima are read off the moving-average-smoothed curve, as the papers plot
  them (``smooth``, ``smoothed_max``; break-even paper Sec. 4.2: "Curves are
  smoothed using moving average"), with the raw maximum beside it; for a
  batch-normalised network the initial transient (Sec. 4.3: lambda_K^1 starts
  high, then decays) is cut off first (``transient_end``);
- an ordering across settings holds only when every consecutive step goes the
  predicted way by more than the combined uncertainty of its two ends
  (``ordering_verdict``); standard errors come from a bootstrap over the L
  mini-batch gradients of a K estimate (``bootstrap_se``), the Lanczos
  residual for lambda_H^1, or the seed spread (``mean_se``);
- a correlation needs at least :data:`MIN_CORRELATION_N` points
  (``correlation``).
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from breakeven_utils.core.io import atomic_write, atomic_write_text
from breakeven_utils.core.stats import DEFAULT_N_BOOT, K_STATS, bootstrap_se, resampled_grams
from breakeven_utils.core.tables import to_markdown
from breakeven_utils.reporting.tables import check_name

__all__ = [
    "VERDICTS", "HOLDS", "FAILS", "UNTESTABLE", "PAPERS", "PAPER_TITLES", "Claim", "FIELDS", "COMPACT",
    "claims_frame", "compact_table", "save_claims", "load_claims", "verdict_counts",
    "DEFAULT_WINDOW", "smooth", "SmoothedMax", "smoothed_max", "transient_end",
    "Z", "FALLBACK_RTOL", "Ordering", "ordering_steps", "ordering_verdict", "mean_se",
    "DEFAULT_N_BOOT", "K_STATS", "resampled_grams", "bootstrap_se",
    "MIN_CORRELATION_N", "Correlation", "correlation", "correlation_verdict",
]

HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable at this scale"
VERDICTS = (HOLDS, FAILS, UNTESTABLE)

#: paper keys and their display titles
PAPER_TITLES = {
    "break_even": "The Break-Even Point on Optimization Trajectories of Deep Neural Networks "
                  "(Jastrzebski et al., ICLR 2020)",
    "sharpest": "DNN's Sharpest Directions Along the SGD Trajectory (Jastrzebski et al., 2018)",
    "walk": "A Walk with SGD (Xing et al., 2018)",
}
PAPERS = tuple(PAPER_TITLES)

_UNTESTABLE_RE = re.compile(r"^not testable at this scale\s*\((.*)\)\s*$", re.S)


# ----------------------------------------------------------------------------- the record


def _cell(v) -> str:
    """A number / mapping / list / string as the table shows it ('' for None and NaN)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, str):
        return v
    return _fmt_measured(v)


def _fmt_measured(m) -> str:
    if isinstance(m, Mapping):
        return ", ".join(f"{k} = {_fmt_number(v)}" for k, v in m.items())
    return _fmt_number(m)


def _fmt_number(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        return f"{float(v):.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_number(x) for x in v) + "]"
    return str(v)


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, tested here.

    paper: a key of :data:`PAPER_TITLES`; section: e.g. "4.2"; figure: the
    paper's figure/table, e.g. "Fig. 4"; claim: one sentence; setting: where
    it was tested, e.g. "SimpleCNN, CIFAR-10, vary eta"; paper_value / ours:
    the paper's number and ours (numbers, mappings and lists are formatted to
    3 significant digits; pass a string to format them yourself); verdict:
    one of :data:`VERDICTS`, or True / False / None (holds / does not hold /
    not testable), or "not testable at this scale (why)"; reason: required for
    "not testable at this scale", optional otherwise (e.g. the margin used);
    figure_file: the figure that shows it, relative to the claims file's
    folder (e.g. "fig4_lambda_k_ratio.png").
    """

    paper: str
    section: str
    figure: str
    claim: str
    setting: str
    paper_value: Any
    ours: Any
    verdict: Any
    reason: str = ""
    figure_file: str = ""

    def __post_init__(self):
        if self.paper not in PAPER_TITLES:
            raise ValueError(f"paper must be one of {PAPERS}, got {self.paper!r}")
        if not str(self.claim).strip():
            raise ValueError("claim must be a non-empty sentence")
        v, reason = self.verdict, "" if self.reason is None else str(self.reason).strip()
        if v is None:
            v = UNTESTABLE
        elif isinstance(v, (bool, np.bool_)):
            v = HOLDS if bool(v) else FAILS
        elif isinstance(v, str):
            v = v.strip()
            m = _UNTESTABLE_RE.match(v)
            if m:
                v, inner = UNTESTABLE, m.group(1).strip()
                reason = reason if inner in reason else f"{inner}; {reason}".strip("; ")
        if v not in VERDICTS:
            raise ValueError(f"claim {self.claim!r}: verdict must be one of {VERDICTS} or a bool/None, "
                             f"got {self.verdict!r}")
        if v == UNTESTABLE and not reason:
            raise ValueError(f"claim {self.claim!r}: {UNTESTABLE!r} needs a reason")
        object.__setattr__(self, "verdict", v)
        object.__setattr__(self, "reason", reason)
        for f in ("section", "figure", "setting", "figure_file"):
            object.__setattr__(self, f, _cell(getattr(self, f)))
        object.__setattr__(self, "paper_value", _cell(self.paper_value))
        object.__setattr__(self, "ours", _cell(self.ours))

    @property
    def paper_title(self) -> str:
        return PAPER_TITLES[self.paper]


FIELDS = tuple(f.name for f in fields(Claim))
COMPACT = ("claim", "setting", "paper", "ours", "verdict", "reason")


def _as_claims(claims) -> list[Claim]:
    if isinstance(claims, (Claim, Mapping)):
        claims = [claims]
    out = []
    for c in claims:
        if isinstance(c, Claim):
            out.append(c)
        elif isinstance(c, Mapping):
            out.append(Claim(**c))
        else:
            raise ValueError(f"claims must be Claim objects or dicts of Claim's fields, "
                             f"got {type(c).__name__}")
    return out


def claims_frame(claims: Iterable[Claim | Mapping]) -> pd.DataFrame:
    """Every field of every claim (columns in :class:`Claim`'s field order)."""
    return pd.DataFrame([asdict(c) for c in _as_claims(claims)], columns=list(FIELDS))


def compact_table(claims: Iterable[Claim | Mapping]) -> pd.DataFrame:
    """The readable table: claim | setting | paper | ours | verdict | reason
    ("paper" is the paper's number, ``paper_value``)."""
    df = claims_frame(claims)
    return pd.DataFrame({"claim": df["claim"], "setting": df["setting"], "paper": df["paper_value"],
                         "ours": df["ours"], "verdict": df["verdict"], "reason": df["reason"]},
                        columns=list(COMPACT))


def verdict_counts(claims: Iterable[Claim | Mapping]) -> dict[str, int]:
    """{verdict: count} over :data:`VERDICTS` (zeros included)."""
    cs = _as_claims(claims)
    return {v: sum(c.verdict == v for c in cs) for v in VERDICTS}


def save_claims(claims: Iterable[Claim | Mapping], outdir: str | os.PathLike,
                name: str = "claims") -> list[Path]:
    """Write ``outdir/name.csv`` (every field) and ``outdir/name.md`` (the compact table), atomically."""
    cs = _as_claims(claims)
    name = check_name(name, (".csv", ".md"))
    outdir = Path(outdir)
    full = claims_frame(cs)
    csv = atomic_write(outdir / f"{name}.csv",
                       lambda tmp: full.to_csv(tmp, index=False, lineterminator="\n"))
    mdp = atomic_write_text(outdir / f"{name}.md", to_markdown(compact_table(cs)))
    return [csv, mdp]


def load_claims(path: str | os.PathLike) -> list[Claim]:
    """Claims from a CSV written by :func:`save_claims` (or a folder holding ``claims.csv``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "claims.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no claims file at {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [f for f in FIELDS if f not in df.columns and f not in ("reason", "figure_file")]
    if missing:
        raise ValueError(f"{path} lacks the claim fields {missing}")
    return [Claim(**{f: r[f] for f in FIELDS if f in df.columns}) for _, r in df.iterrows()]


# ----------------------------------------------------------------------------- smoothing

#: moving-average window (measurements) used for maxima unless a notebook states another
DEFAULT_WINDOW = 5


def _as_1d(values, name="values") -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    return v


def _check_window(window) -> int:
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    return int(window)


def _window_sums(v: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred window sums of the finite entries of v and their counts."""
    ok = np.isfinite(v)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(v.size)
    lo = np.clip(i - (window - 1) // 2, 0, v.size)
    hi = np.clip(i + window // 2 + 1, 0, v.size)
    return csum[hi] - csum[lo], ccnt[hi] - ccnt[lo]


def smooth(values, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """Centred moving average over ``window`` consecutive measurements, as the papers plot
    their curves (break-even paper Sec. 4.2) and as ``plotting.curves`` draws them.

    Point i averages the finite values among indices i - (window-1)//2 ... i + window//2;
    the window shrinks at both ends (no padding), NaN/inf are skipped (NaN where a
    window holds none). Same length as ``values``; window=1 returns them as floats.
    """
    v = _as_1d(values)
    window = _check_window(window)
    if window == 1 or v.size == 0:
        return v.copy()
    s, n = _window_sums(v, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = s / n
    out[n == 0] = np.nan
    return out


def transient_end(values, window: int = DEFAULT_WINDOW) -> int:
    """Index where the initial transient of a curve ends (0 when there is none).

    Break-even paper Sec. 4.3: with batch normalisation lambda_K^1 starts high and
    decays before it grows towards the break-even point. Definition: on the smoothed
    curve s = smooth(values, window) (first finite point i0), if s starts with a
    decrease (s[i1] < s[i0], i1 the next finite point) the transient ends at its first
    local minimum: the first index i > i0 with s[i] <= s[j] for every finite j within
    window//2 (at least 1) on either side. A curve that starts rising or flat gives 0
    (i0); one that decays to its end gives its last finite index (all transient).
    """
    s = smooth(values, window)
    idx = np.flatnonzero(np.isfinite(s))
    if len(idx) < 2:
        return int(idx[0]) if len(idx) else 0
    if not s[idx[1]] < s[idx[0]]:
        return int(idx[0])
    h = max(1, _check_window(window) // 2)
    f = s[idx]
    for k in range(1, len(idx)):
        if f[k] <= f[max(0, k - h):k + h + 1].min():
            return int(idx[k])
    return int(idx[-1])  # unreachable: the last point of a decay is a minimum of its window


class SmoothedMax(NamedTuple):
    """Maximum of a curve after its transient: smoothed (``value`` at ``index``) and raw
    (``raw_value`` at ``raw_index``); indices into the full curve. ``start``: the first
    index considered (the transient's end, or the first finite point); ``at_start``: the
    smoothed maximum sits at ``start`` (the curve never grew). ``se`` / ``raw_se``: the
    standard error of the smoothed / raw maximum from per-point standard errors (NaN
    without them): for independent estimates the mean of n points in a window has
    se = sqrt(sum se_i^2) / n (ignoring the upward bias of picking the largest).
    ``at_end``: the smoothed maximum sits at the last finite point (the curve may still
    be rising: its peak lies beyond the measurements)."""

    value: float
    index: int
    raw_value: float
    raw_index: int
    start: int
    at_start: bool
    window: int
    se: float = math.nan
    raw_se: float = math.nan
    at_end: bool = False


def smoothed_max(values, window: int = DEFAULT_WINDOW, after_transient: bool = False,
                 ses=None) -> SmoothedMax:
    """Largest value of the smoothed curve (``smooth``) and of the raw curve, both over
    indices >= ``transient_end(values, window)`` when ``after_transient`` (else over the
    whole curve). The smoothing uses the whole curve, so the point after the transient
    is averaged with its neighbours as plotted. All-NaN input gives NaN values, index -1.
    """
    v = _as_1d(values)
    window = _check_window(window)
    s = smooth(v, window)
    start = transient_end(v, window) if after_transient else 0
    ok_s = np.isfinite(s) & (np.arange(v.size) >= start)
    ok_v = np.isfinite(v) & (np.arange(v.size) >= start)
    if not ok_s.any():
        return SmoothedMax(math.nan, -1, math.nan, -1, int(start), False, window)
    i = int(np.flatnonzero(ok_s)[np.argmax(s[ok_s])])
    j = int(np.flatnonzero(ok_v)[np.argmax(v[ok_v])])
    first = int(np.flatnonzero(ok_s)[0])
    se = raw_se = math.nan
    if ses is not None:
        e = _as_1d(ses, "ses")
        if e.shape != v.shape:
            raise ValueError(f"ses has shape {e.shape}, values {v.shape}")
        w = np.arange(max(0, i - (window - 1) // 2), min(v.size, i + window // 2 + 1))
        w = w[np.isfinite(v[w])]
        se = float(math.sqrt(np.sum(e[w] ** 2)) / len(w))  # NaN if any se in the window is
        raw_se = float(e[j])
    last = int(np.flatnonzero(ok_s)[-1])
    return SmoothedMax(float(s[i]), i, float(v[j]), j, int(start), i == first, window, se, raw_se,
                       i == last)


# ----------------------------------------------------------------------------- orderings

#: multiple of the combined standard error a step must exceed (about 95%, two-sided)
Z = 1.96
#: margin, relative to the larger |value| of a step, used where a standard error is missing
FALLBACK_RTOL = 0.05


def mean_se(values) -> tuple[float, float, int]:
    """(mean, standard error of the mean, n) of the finite values, e.g. one maximum per
    seed; the se is std(ddof=1)/sqrt(n), NaN for n < 2."""
    v = _as_1d(values)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan, n


def _name(symbol: str, x) -> str:
    try:
        xs = f"{float(x):g}"
    except (TypeError, ValueError):
        xs = str(x)
    return f"{symbol}={xs}" if symbol else xs


def ordering_steps(settings, values, ses=None, sign: int = +1, *, z: float = Z,
                   rtol: float = FALLBACK_RTOL) -> pd.DataFrame:
    """Consecutive steps of an ordering, settings ascending, settings with a NaN value left out.

    Columns: setting_a, setting_b, value_a, value_b, step (= sign * (value_b - value_a),
    positive in the predicted direction), margin, margin_kind ('se': z * sqrt(se_a^2 +
    se_b^2); 'relative': rtol * max(|value_a|, |value_b|) where a standard error is
    missing) and outcome: 'as predicted' (step > margin), 'against' (step < -margin),
    'within noise' (otherwise).
    """
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 (values grow with the setting) or -1, got {sign!r}")
    if not z > 0 or not rtol >= 0:
        raise ValueError(f"z must be positive and rtol non-negative, got z={z!r}, rtol={rtol!r}")
    x = np.asarray(settings, dtype=float)
    v = _as_1d(values)
    e = np.full(v.shape, np.nan) if ses is None else _as_1d(ses, "ses")
    if not (x.shape == v.shape == e.shape):
        raise ValueError(f"settings, values and ses differ in shape: {x.shape}, {v.shape}, {e.shape}")
    if len(np.unique(x)) != len(x):
        raise ValueError(f"settings must be distinct (one value per setting), got {list(x)}")
    keep = np.isfinite(v)
    order = np.argsort(x[keep], kind="stable")
    x, v, e = x[keep][order], v[keep][order], e[keep][order]
    rows = []
    for a in range(len(x) - 1):
        b = a + 1
        step = sign * (v[b] - v[a])
        if np.isfinite(e[a]) and np.isfinite(e[b]):
            margin, kind = z * math.hypot(e[a], e[b]), "se"
        else:
            margin, kind = rtol * max(abs(v[a]), abs(v[b])), "relative"
        outcome = "as predicted" if step > margin else "against" if step < -margin else "within noise"
        rows.append(dict(setting_a=x[a], setting_b=x[b], value_a=v[a], value_b=v[b], step=step,
                         margin=margin, margin_kind=kind, outcome=outcome))
    return pd.DataFrame(rows, columns=["setting_a", "setting_b", "value_a", "value_b", "step", "margin",
                                       "margin_kind", "outcome"])


class Ordering(NamedTuple):
    """Verdict of an ordering: ``verdict`` in VERDICTS, ``reason`` (why, which settings
    were excluded, which margin), ``margin`` (the margins used, for the table)."""

    verdict: str
    reason: str
    margin: str


def ordering_verdict(settings, values, ses=None, sign: int = +1, *, z: float = Z,
                     rtol: float = FALLBACK_RTOL, symbol: str = "") -> Ordering:
    """Does ``values`` change in the direction ``sign`` (+1: grows with the setting, -1:
    shrinks) across every consecutive pair of ``settings`` (sorted), beyond the noise?

    Each step must exceed z * sqrt(se_a^2 + se_b^2) (``ses``: standard errors of the
    values; where one is NaN the step uses ``rtol`` x the larger |value| instead, and the
    reason says so). Any step against the prediction beyond its margin -> "does not
    hold"; otherwise any step inside its margin -> "not testable at this scale" with
    reason "within noise ..."; every step beyond its margin the predicted way -> "holds".
    Settings whose value is NaN (diverged, not measured) are left out and named
    (``symbol``, e.g. "eta", names them); fewer than 2 left -> not testable.
    """
    x = np.asarray(settings, dtype=float)
    v = _as_1d(values)
    excluded = [_name(symbol, s) for s, val in sorted(zip(x, v)) if not np.isfinite(val)]
    steps = ordering_steps(x, v, ses, sign, z=z, rtol=rtol)
    notes = []
    if excluded:
        notes.append(f"excluded (no finite value: diverged or not measured): {', '.join(excluded)}")
    if steps.empty:
        n = int(np.isfinite(v).sum())
        return Ordering(UNTESTABLE, "; ".join([f"{n} setting(s) with a finite value, an ordering needs 2"]
                                              + notes), "")
    rel = steps["margin_kind"] == "relative"
    if rel.any():
        notes.append(f"no standard error for {int(rel.sum())} of {len(steps)} step(s): margin "
                     f"{rtol:.0%} of the larger value there")
    parts = []
    for r in steps.itertuples():
        kind = f"{z:g} se" if r.margin_kind == "se" else f"{rtol:.0%}"
        parts.append(f"{_name(symbol, r.setting_a)}->{_name(symbol, r.setting_b)}: "
                     f"{r.margin:.3g} ({kind})")
    margin = "; ".join(parts)

    def describe(r):
        return (f"{_name(symbol, r.setting_a)} -> {_name(symbol, r.setting_b)}: "
                f"{r.value_a:.3g} -> {r.value_b:.3g}, margin {r.margin:.3g}")

    against = steps[steps["outcome"] == "against"]
    noise = steps[steps["outcome"] == "within noise"]
    if len(against):
        verdict, why = FAILS, "against the prediction beyond the noise: " + "; ".join(
            describe(r) for r in against.itertuples())
    elif len(noise):
        verdict, why = UNTESTABLE, "within noise: " + "; ".join(describe(r) for r in noise.itertuples())
    else:
        verdict, why = HOLDS, ""
    return Ordering(verdict, "; ".join([p for p in [why] + notes if p]), margin)


# ----------------------------------------------------------------------------- correlations

#: fewest points a correlation claim is judged on
MIN_CORRELATION_N = 8


class Correlation(NamedTuple):
    """Pearson r, number of points n, two-sided p-value; ``testable`` is False (and
    ``reason`` says why) below ``min_n`` points or for a constant series."""

    r: float
    n: int
    p: float
    testable: bool = True
    reason: str = ""


def correlation(x, y, *, min_n: int = MIN_CORRELATION_N) -> Correlation:
    """Pearson correlation (scipy.stats.pearsonr) of the pairs where both are finite.
    Below ``min_n`` pairs r and p are still reported when computable (n >= 3) but
    ``testable`` is False: r = 1 from 3 points means nothing."""
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in length ({a.size} vs {b.size})")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b, n = a[ok], b[ok], int(ok.sum())
    if n >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
        r, p = stats.pearsonr(a, b)
        r, p = float(r), float(p)
    else:
        r = p = math.nan
    if n < min_n:
        return Correlation(r, n, p, False, f"{n} points, a correlation needs at least {min_n}")
    if not math.isfinite(r):
        return Correlation(r, n, p, False, "a constant series has no correlation")
    return Correlation(r, n, p, True, "")


def correlation_verdict(c: Correlation, r_min: float = 0.5, alpha: float = 0.05) -> tuple[str, str]:
    """(verdict, reason) for "x and y are positively correlated": holds when r >= r_min and
    p < alpha, does not hold otherwise, not testable when ``c`` is not testable."""
    if not c.testable:
        return UNTESTABLE, c.reason
    if c.r >= r_min and c.p < alpha:
        return HOLDS, f"r={c.r:.2f} >= {r_min:g}, p={c.p:.2g} < {alpha:g} (n={c.n})"
    return FAILS, f"r={c.r:.2f}, p={c.p:.2g} (n={c.n}); needs r >= {r_min:g} and p < {alpha:g}"
