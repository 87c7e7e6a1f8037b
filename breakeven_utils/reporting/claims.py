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
from dataclasses import asdict, dataclass, fields, replace
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
    "VERDICTS", "HOLDS", "FAILS", "UNTESTABLE", "PAPERS", "PAPER_TITLES", "Claim", "FIELDS",
    "OPTIONAL_FIELDS", "COMPACT",
    "cite", "quoted", "Absence", "Peak", "scatter_se", "compare_peaks", "peaks_text",
    "claims_frame", "compact_table", "at_profile", "NO_VERDICT_PROFILES", "save_claims", "load_claims",
    "verdict_counts",
    "DEFAULT_WINDOW", "smooth", "SmoothedMax", "smoothed_max", "transient_end",
    "Z", "FALLBACK_RTOL", "Ordering", "ordering_steps", "ordering_verdict", "mean_se",
    "DEFAULT_N_BOOT", "K_STATS", "resampled_grams", "bootstrap_se",
    "MIN_CORRELATION_N", "Correlation", "correlation", "correlation_interval", "correlation_verdict",
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

def cite(where: str, text: str) -> str:
    """A paper's sentence as a claim's ``quote``: ``cite("Sec. 4.2", "...")`` ->
    'Sec. 4.2: "..."'. ``where`` names the section (and figure or table) it stands in:
    the papers' text files carry no page numbers."""
    where, text = str(where).strip(), " ".join(str(text).split())
    if not where or not text:
        raise ValueError("a quote needs where it stands and the sentence")
    return f'{where}: "{text}"'


def quoted(claims: Iterable, quotes) -> list:
    """``claims`` with each row's ``quote`` filled from ``quotes``: a sequence of (regular
    expression, quote made with :func:`cite`) pairs searched in order in "figure | claim"
    (e.g. ``(r"^Fig. 4 \\| Conjecture 1", cite("Sec. 4.2", "..."))``); a row that already
    has a quote keeps it. A row no pattern matches raises, naming it: every row tests a
    sentence of its paper."""
    table = [(re.compile(p), q) for p, q in quotes]
    out, bare = [], []
    for c in claims:
        if not c.quote:
            text = f"{c.figure} | {c.claim}"
            hit = next((q for p, q in table if p.search(text)), None)
            if hit is None:
                bare.append(text)
                continue
            c = replace(c, quote=hit)
        out.append(c)
    if bare:
        raise ValueError(f"no quote for {len(bare)} claim(s): {bare[:5]} (add a pattern to the "
                         "section's quotes module)")
    return out


@dataclass(frozen=True)
class Absence:
    """A claim of a paper that no notebook tests, and why (e.g. "needs Tiny-ImageNet,
    which is not in the offline data"): the ledger lists these after the tested rows, so
    every claim of a paper is either a row or a stated absence."""

    paper: str
    section: str
    figure: str
    claim: str
    quote: str
    why: str

    def __post_init__(self):
        if self.paper not in PAPER_TITLES:
            raise ValueError(f"paper must be one of {PAPERS}, got {self.paper!r}")
        for f in ("claim", "quote", "why"):
            if not str(getattr(self, f)).strip():
                raise ValueError(f"an absent claim needs a non-empty {f}: {self}")


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
    folder (e.g. "fig4_lambda_k_ratio.png"); quote: the paper's sentence the
    row tests, with where it stands (:func:`cite`).
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
    quote: str = ""

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
        for f in ("section", "figure", "setting", "figure_file", "quote"):
            object.__setattr__(self, f, _cell(getattr(self, f)))
        object.__setattr__(self, "paper_value", _cell(self.paper_value))
        object.__setattr__(self, "ours", _cell(self.ours))

    @property
    def paper_title(self) -> str:
        return PAPER_TITLES[self.paper]


FIELDS = tuple(f.name for f in fields(Claim))
#: fields a claims file may lack (files written before they existed)
OPTIONAL_FIELDS = ("reason", "figure_file", "quote")
COMPACT = ("claim", "paper says", "setting", "paper", "ours", "verdict", "reason")


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
    """The readable table: claim | paper says | setting | paper | ours | verdict | reason
    ("paper says": the sentence tested, ``quote``; "paper": the paper's number, ``paper_value``)."""
    df = claims_frame(claims)
    return pd.DataFrame({"claim": df["claim"], "paper says": df["quote"], "setting": df["setting"],
                         "paper": df["paper_value"],
                         "ours": df["ours"], "verdict": df["verdict"], "reason": df["reason"]},
                        columns=list(COMPACT))


def verdict_counts(claims: Iterable[Claim | Mapping]) -> dict[str, int]:
    """{verdict: count} over :data:`VERDICTS` (zeros included)."""
    cs = _as_claims(claims)
    return {v: sum(c.verdict == v for c in cs) for v in VERDICTS}


#: profiles whose runs cannot decide a claim, and why: their verdicts are all "not testable"
NO_VERDICT_PROFILES = {"smoke": "the smoke profile trains tiny models on synthetic data (a test of the "
                                "code, not of the papers)"}


def at_profile(claims: Iterable[Claim | Mapping], profile: str) -> list[Claim]:
    """``claims`` as runs at ``profile`` can state them: at a profile of
    :data:`NO_VERDICT_PROFILES` every verdict becomes "not testable at this scale", its reason
    saying why and what the rule gave (the rules still run, and nbval checks them); at any
    other profile they are returned unchanged."""
    cs = _as_claims(claims)
    why = NO_VERDICT_PROFILES.get(profile)
    if why is None:
        return cs
    return [replace(c, verdict=UNTESTABLE, reason=f"{why}; the rule gave {c.verdict!r}"
                    + (f" ({c.reason})" if c.reason else "")) for c in cs]


def save_claims(claims: Iterable[Claim | Mapping], outdir: str | os.PathLike,
                name: str = "claims", *, require_quote: bool = True) -> list[Path]:
    """Write ``outdir/name.csv`` (every field) and ``outdir/name.md`` (the compact table), atomically.
    With ``require_quote`` (the default) every claim must carry the paper's sentence it tests
    (``Claim.quote``): a ValueError names those that do not, before anything is written."""
    cs = _as_claims(claims)
    bare = [c.claim for c in cs if not c.quote] if require_quote else []
    if bare:
        raise ValueError(f"{len(bare)} claim(s) without the paper's sentence they test (Claim.quote, made "
                         f"with cite()): {bare[:5]}")
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
    missing = [f for f in FIELDS if f not in df.columns and f not in OPTIONAL_FIELDS]
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


def _name(symbol: str, x, labels: Mapping | None = None) -> str:
    """How a setting is said in a reason: its label where ``labels`` has one, else
    'symbol=value'."""
    if labels is not None and x in labels:
        return str(labels[x])
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
    were excluded, which margin), ``margin`` (the margins used, for the table); ``peaks``:
    {setting: :class:`Peak`} when the ordering compares peaks (:func:`compare_peaks`)."""

    verdict: str
    reason: str
    margin: str
    peaks: Mapping | None = None


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


# ----------------------------------------------------------------------------- peaks


class Peak(NamedTuple):
    """The peak of one setting's curve(s) as :func:`compare_peaks` reads it: the
    ``window``-smoothed maximum ``value`` (seed mean with several seeds) and its standard
    error ``se``, the raw maximum ``raw_value`` and ``raw_se``, their measurement indices
    (``index``, ``raw_index``; with several seeds the first seed's), ``at_end`` /
    ``raw_at_end``: the maximum sits at the curve's last finite measurement (in any seed),
    so it is a lower bound; ``n_seeds``: curves averaged; ``reach`` / ``raw_reach``: how high
    such a lower bound could plausibly rise (:func:`tail_rise`; ``value`` itself when not
    at the end)."""

    value: float
    se: float
    raw_value: float
    raw_se: float
    index: int
    raw_index: int
    at_end: bool
    raw_at_end: bool
    n_seeds: int = 1
    reach: float = math.inf
    raw_reach: float = math.inf


def scatter_se(values, window: int = 3, *, half_width: int | None = None) -> np.ndarray:
    """Per-point noise of a curve measured on the curve itself: the scatter of the raw points
    about their ``window``-point moving average (:func:`smooth`), as root mean square over the
    ``half_width`` (default ``2 * window``) neighbours of each point, scaled by
    sqrt(w / (w - 1)) because each residual is taken against a mean that contains the point
    (for independent noise sigma, E[(v_i - s_i)^2] = sigma^2 (1 - 1/w)). A trend inside the
    window inflates it, so it errs on the side of "within noise". NaN where fewer than 3
    residuals are near; the noise model for lambda_H^1 along a trajectory (issue 20: raw
    points scatter by about 20% between neighbours, far beyond the Lanczos tolerance)."""
    v = _as_1d(values)
    window = _check_window(window)
    if window < 2:
        raise ValueError("scatter_se needs a smoothing window of at least 2 measurements")
    h = 2 * window if half_width is None else int(half_width)
    r2 = (v - smooth(v, window)) ** 2
    ok = np.isfinite(r2)
    out = np.full(v.shape, np.nan)
    for i in np.flatnonzero(np.isfinite(v)):
        lo, hi = max(0, i - h), min(v.size, i + h + 1)
        near = r2[lo:hi][ok[lo:hi]]
        if near.size >= 3:
            out[i] = math.sqrt(near.mean() * window / (window - 1))
    return out


#: points of a curve's tail its trend is read from: the last quarter, at least this many
TAIL_MIN = 4


def tail_rise(values, z: float = Z) -> float:
    """How much a curve still rising at its end could plausibly add (issue 21, item 6): the steep
    end of the 95% interval of the slope of its last quarter of finite points (at least
    :data:`TAIL_MIN`; per measurement, by least squares), continued for as many measurements
    again as the whole curve has (the run twice as long); 0 when even that slope is not
    positive; inf when the tail is too short to read."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    m = max(TAIL_MIN, v.size // 4)
    if v.size < m or m < 3:
        return math.inf
    tail = v[-m:]
    if np.ptp(tail) == 0:
        return 0.0
    fit = stats.linregress(np.arange(m), tail)
    return max(0.0, float(fit.slope + z * fit.stderr)) * v.size


def _curve_peak(v: np.ndarray, e: np.ndarray, window: int, after_transient: bool):
    """(smoothed max, its se, index, raw max, raw se, raw index, at_end, raw_at_end, rise) of one
    curve, or None when it has no point after its first (shared) measurement; ``rise``:
    :func:`tail_rise` where a maximum sits at the end, else 0."""
    fin = np.flatnonzero(np.isfinite(v))
    if len(fin) < 2:
        return None
    start = int(fin[1])  # the first measurement is the state every run shares at t = 0
    if after_transient:
        start = max(start, transient_end(v, window))
    s = smooth(v, window)
    cand = fin[fin >= start]
    cand_s = cand[np.isfinite(s[cand])]
    i = int(cand_s[np.argmax(s[cand_s])])
    j = int(cand[np.argmax(v[cand])])
    w = np.arange(max(0, i - (window - 1) // 2), min(v.size, i + window // 2 + 1))
    w = w[np.isfinite(v[w])]
    se = float(math.sqrt(np.sum(e[w] ** 2)) / len(w))
    last = int(fin[-1])
    rise = tail_rise(v) if last in (i, j) else 0.0
    return float(s[i]), se, i, float(v[j]), float(e[j]), j, i == last, j == last, rise


def _as_curves(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name}: a curve must be a 1-D array (one run) or 2-D (seeds x measurements), "
                         f"got shape {np.shape(x)}")
    return a


def _peaks_of(curves: Mapping, ses, floor, window: int, after_transient: bool):
    """{setting: Peak} of the settings with a peak, and the settings without one."""
    peaks, missing = {}, []
    for x, c in curves.items():
        vals = _as_curves(c, f"curve of setting {x!r}")
        if isinstance(ses, str):
            errs = np.stack([scatter_se(row, window) for row in vals])
        elif ses is not None and ses.get(x) is not None:
            errs = _as_curves(ses[x], f"ses of setting {x!r}")
            if errs.shape != vals.shape:
                raise ValueError(f"ses of setting {x!r} has shape {errs.shape}, its curve {vals.shape}")
        else:
            errs = np.full(vals.shape, np.nan)
        if floor is not None and floor.get(x) is not None:
            errs = np.fmax(errs, np.broadcast_to(np.asarray(floor[x], dtype=float), vals.shape))
        per_seed = [p for p in (_curve_peak(v, e, window, after_transient) for v, e in zip(vals, errs))
                    if p is not None]
        if not per_seed:
            missing.append(x)
            continue
        a = np.array([p[:2] + p[3:5] for p in per_seed])  # value, se, raw value, raw se
        n = len(per_seed)
        if n > 1:
            value, se, _ = mean_se(a[:, 0])
            raw, raw_se, _ = mean_se(a[:, 2])
        else:
            value, se, raw, raw_se = a[0]
        # a seed whose maximum is its last point could still add its tail's rise to the mean
        reach = float(value) + sum(p[8] for p in per_seed if p[6]) / n
        raw_reach = float(raw) + sum(p[8] for p in per_seed if p[7]) / n
        peaks[x] = Peak(float(value), float(se), float(raw), float(raw_se), per_seed[0][2], per_seed[0][5],
                        any(p[6] for p in per_seed), any(p[7] for p in per_seed), n, reach, raw_reach)
    return peaks, missing


def _bounded_outcomes(steps: pd.DataFrame, reach: Mapping, sign: int) -> list[str]:
    """Each step's outcome, 'undecided' where a lower-bound end (a peak at the last
    measurement) could, by rising, move the step to another outcome: up to its ``reach``
    ({setting: highest plausible value; -inf: not at the end}) for a step in the predicted
    direction or within noise, by any amount for a step against it (a run that has not
    reached its peak never says a published result failed)."""
    out = []
    for r in steps.itertuples():
        cap = {x: (math.inf if r.outcome == "against" and reach[x] > -math.inf else reach[x])
               for x in (r.setting_a, r.setting_b)}
        moved = set()
        for a in {r.value_a, max(r.value_a, cap[r.setting_a])}:
            for b in {r.value_b, max(r.value_b, cap[r.setting_b])}:
                step = sign * (b - a)
                moved.add("as predicted" if step > r.margin else "against" if step < -r.margin
                          else "within noise")
        out.append(r.outcome if moved == {r.outcome} else "undecided")
    return out


def compare_peaks(curves: Mapping, sign: int = +1, *, ses=None, window: int = 3,
                  after_transient: bool = False, symbol: str = "", z: float = Z,
                  rtol: float = FALLBACK_RTOL, floor: Mapping | None = None, noise: str = "",
                  labels: Mapping | None = None) -> Ordering:
    """The one rule for "the maximum of X grows (``sign`` +1) / shrinks (-1) with the setting".

    ``curves``: {setting: the quantity at a run's measurements, in order} (1-D, NaN where not
    measured; or 2-D seeds x measurements, then each seed's peak is read and the seed
    spread is the standard error). ``ses``: None, {setting: per-point standard errors} of
    the same shape (e.g. K's bootstrap over its L gradients), or "scatter" (per-point noise
    from the curve itself, :func:`scatter_se`); ``floor``: {setting: per-point lower bound
    of the noise} (e.g. the Lanczos tolerance); ``noise``: how ``ses`` were obtained, said
    in the reason; ``labels``: {setting: name said in the reason} where a setting is not a
    value of ``symbol`` (two different runs compared, e.g. {0: "SimpleCNN eta=0.01", 1:
    "SimpleCNN-BN eta=0.001"}). Rules (issue 20):

    - the first measurement (the state every run from the same initialisation shares) is
      never a peak; with ``after_transient`` neither is the initial transient
      (:func:`transient_end`; batch normalisation, break-even paper Sec. 4.3);
    - a peak at a curve's last finite measurement is a lower bound: a step whose outcome
      could change if that peak rose as far as its tail's trend plausibly takes it
      (:func:`tail_rise`: the steep end of the trend's 95% interval, continued for a run
      twice as long; any rise for a step against the prediction: a curve short of its peak
      never makes a "does not hold") is not testable, naming the still-rising curve; a step
      that such a rise, or any rise in the direction it already goes, leaves alone keeps its
      outcome;
    - the verdict must be the same on the raw maxima and on the ``window``-smoothed
      maxima, else not testable ("depends on the smoothing");
    - settings without a peak (all NaN, or only the first measurement) are left out and
      named; fewer than two left is not testable;
    - each step must exceed z x the combined standard error of its two ends, or ``rtol`` x
      the larger value where one end has none (said in the reason); a step against the
      prediction beyond it is "does not hold", a step inside it "not testable".
    """
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 (the peak grows with the setting) or -1, got {sign!r}")
    window = _check_window(window)
    if isinstance(ses, str) and ses != "scatter":
        raise ValueError(f"ses must be None, a mapping or 'scatter', got {ses!r}")
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping {setting: curve}")
    peaks, missing = _peaks_of(curves, ses, floor, window, after_transient)

    def name(x):
        return _name(symbol, x, labels)

    notes = []
    if missing:
        notes.append("excluded (no measurement after the shared first one: diverged or not measured): "
                     + ", ".join(name(x) for x in sorted(missing, key=float)))
    if len(peaks) < 2:
        return Ordering(UNTESTABLE, "; ".join([f"{len(peaks)} setting(s) with a peak, an ordering needs 2"]
                                              + notes), "", peaks)
    xs = sorted(peaks, key=float)
    verdicts, whys, margin = {}, {}, ""
    for kind in ("smoothed", "raw"):
        val = [peaks[x].value if kind == "smoothed" else peaks[x].raw_value for x in xs]
        se = [peaks[x].se if kind == "smoothed" else peaks[x].raw_se for x in xs]
        at_end = {float(x): peaks[x].at_end if kind == "smoothed" else peaks[x].raw_at_end for x in xs}
        reach = {float(x): (peaks[x].reach if kind == "smoothed" else peaks[x].raw_reach) if at_end[float(x)]
                 else -math.inf for x in xs}
        steps = ordering_steps([float(x) for x in xs], val, se, sign, z=z, rtol=rtol)
        steps["outcome"] = _bounded_outcomes(steps, reach, sign)

        def describe(r):
            return (f"{name(r.setting_a)} -> {name(r.setting_b)}: "
                    f"{r.value_a:.3g} -> {r.value_b:.3g}, margin {r.margin:.3g}")

        against = steps[steps["outcome"] == "against"]
        noisy = steps[steps["outcome"] == "within noise"]
        open_ = steps[steps["outcome"] == "undecided"]
        parts = []
        if len(open_):
            rising = sorted({x for r in open_.itertuples() for x in (r.setting_a, r.setting_b) if at_end[x]})
            parts.append("still rising at the last measurement (its peak is a lower bound that could "
                         f"change the step): {', '.join(name(x) for x in rising)} in "
                         + "; ".join(describe(r) for r in open_.itertuples())
                         + " (runs continued past their peak would decide it)")
        bounded = [x for x in xs if at_end[float(x)] and np.isfinite(reach[float(x)])
                   and not any(x in (r.setting_a, r.setting_b) for r in open_.itertuples())]
        if bounded:
            parts.append("; ".join(f"{name(x)} still rising at its last measurement, but its tail's trend "
                                   f"(steep end of its 95% interval, continued for a run twice as long) "
                                   f"takes it only to {reach[float(x)]:.3g}: no step changes"
                                   for x in bounded))
        if len(against):
            verdict = FAILS
            parts.insert(0, "against the prediction beyond the noise: "
                         + "; ".join(describe(r) for r in against.itertuples()))
        elif len(noisy) or len(open_):
            verdict = UNTESTABLE
            if len(noisy):
                parts.insert(0, "within noise: " + "; ".join(describe(r) for r in noisy.itertuples()))
        else:
            verdict = HOLDS
        verdicts[kind], whys[kind] = verdict, "; ".join(parts)
        if kind == "smoothed":
            rel = steps["margin_kind"] == "relative"
            if rel.any():
                notes.append(f"no standard error for {int(rel.sum())} of {len(steps)} step(s): margin "
                             f"{rtol:.0%} of the larger value there")
            margin = "; ".join(f"{name(r.setting_a)}->{name(r.setting_b)}: {r.margin:.3g} "
                               f"({f'{z:g} se' if r.margin_kind == 'se' else f'{rtol:.0%}'})"
                               for r in steps.itertuples())
    if isinstance(ses, str):
        notes.append(noise or f"se: scatter of the raw curve about its {window}-point moving average")
    elif noise:
        notes.append(noise)
    if any(p.n_seeds > 1 for p in peaks.values()):
        notes.append("se: spread over " + ", ".join(f"{peaks[x].n_seeds}" for x in xs) + " seeds")
    first = "the first measurement (shared initial state)" + (" and the initial transient" if after_transient
                                                              else "")
    notes.append(f"{first} excluded from the maxima")
    if verdicts["smoothed"] != verdicts["raw"]:
        why = (f"depends on the smoothing: the {window}-point smoothed maxima give '{verdicts['smoothed']}'"
               + (f" ({whys['smoothed']})" if whys["smoothed"] else "")
               + f", the raw maxima '{verdicts['raw']}'" + (f" ({whys['raw']})" if whys["raw"] else "")
               + "; denser measurements around the peaks, or several seeds, would decide it")
        return Ordering(UNTESTABLE, "; ".join([why] + notes), margin, peaks)
    reason = "; ".join(p for p in [whys["smoothed"]] + notes if p)
    return Ordering(verdicts["smoothed"], reason, margin, peaks)


def peaks_text(peaks: Mapping, symbol: str = "", digits: int = 3, *, labels: Mapping | None = None) -> str:
    """The "ours" cell of a peak ordering: 'eta=0.01: 1.76 ± 0.28 (raw 2.04); eta=0.1: 0.43
    (raw 0.49, still rising)'; ``labels`` as in :func:`compare_peaks`."""
    def num(v):
        return "n/a" if not np.isfinite(v) else f"{v:.{digits}g}"

    parts = []
    for x in sorted(peaks, key=float):
        p = peaks[x]
        extra = [f"raw {num(p.raw_value)}"]
        if p.at_end or p.raw_at_end:
            extra.append("still rising")
        if p.n_seeds > 1:
            extra.append(f"mean of {p.n_seeds} seeds")
        se = f" ± {num(p.se)}" if np.isfinite(p.se) else ""
        parts.append(f"{_name(symbol, x, labels)}: {num(p.value)}{se} ({', '.join(extra)})")
    return "; ".join(parts)


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


def correlation_interval(c: Correlation, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided (1 - alpha) confidence interval of Pearson r by Fisher's z transform,
    atanh(r) +- z_{alpha/2} / sqrt(n - 3) (the noise model of a correlation claim)."""
    if c.n <= 3 or not math.isfinite(c.r):
        return -1.0, 1.0
    z = math.atanh(min(max(c.r, -1 + 1e-12), 1 - 1e-12))
    half = stats.norm.ppf(1 - alpha / 2) / math.sqrt(c.n - 3)
    return math.tanh(z - half), math.tanh(z + half)


def correlation_verdict(c: Correlation, r_min: float = 0.5, alpha: float = 0.05) -> tuple[str, str]:
    """(verdict, reason) for "x and y are (strongly) correlated, r >= r_min": holds when
    r >= r_min and p < alpha; does not hold only when the whole (1 - alpha) Fisher interval
    of r lies below r_min (the weak correlation exceeds the noise of r at n points);
    otherwise, and when ``c`` is not testable, not testable at this scale."""
    if not c.testable:
        return UNTESTABLE, c.reason
    if c.r >= r_min and c.p < alpha:
        return HOLDS, f"r={c.r:.2f} >= {r_min:g}, p={c.p:.2g} < {alpha:g} (n={c.n})"
    lo, hi = correlation_interval(c, alpha)
    ci = f"{1 - alpha:.0%} interval of r [{lo:.2f}, {hi:.2f}] (Fisher z, n={c.n})"
    if hi < r_min:
        return FAILS, f"r={c.r:.2f}, {ci} lies below {r_min:g}"
    return UNTESTABLE, (f"within noise: r={c.r:.2f}, p={c.p:.2g}, but the {ci} reaches {r_min:g}; "
                        f"more measurements along the trajectory would decide it")
