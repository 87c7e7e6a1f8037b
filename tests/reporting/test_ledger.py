"""The claims ledger page (ledger.py): new- and old-format claims files, counts, links, grouping."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from breakeven_utils.papers import registry
from breakeven_utils.reporting import claims as C
from breakeven_utils.reporting import ledger as L

REPO = Path(__file__).resolve().parents[2]
ORDER = registry.notebook_order()

# notebook 1's committed table before claims.py (columns claim, measured, criterion, verdict)
OLD_BREAK_EVEN = pd.DataFrame({
    "claim": ["(a) lambda_K^1 and lambda_H^1 are correlated before the break-even point",
              "(d) the smaller learning rate shows more outliers in the spectra of K and H",
              "(e) the break-even point comes earlier for the larger learning rate (Theorem 1)"],
    "measured": ["lr=0.01: r=0.97 (n=18); lr=0.1: r=1 (n=3)", "lr=0.01: 6 of 24; lr=0.1: 2 of 24",
                 "lr=0.01: reached in 0/1 runs"],
    "criterion": ["Pearson r >= 0.5 for every learning rate", "count(lr small) > count(lr large)",
                  "iteration: lr large < lr small"],
    "verdict": ["holds", "does not hold", "holds (lr=0.01 never reached it: earlier holds)"],
})


def _old_conjectures():
    """Notebook 2's committed wide table: one row per setting, one verdict column per ordering."""
    rows = []
    for sweep, vals, k, v1, v2 in [
        ("simplecnn_eta", (0.01, 0.1), (2.0, 0.5), "holds", "does not hold"),
        ("resnet32_S", (32.0, 512.0), (1.9, 1.9),
         "not testable at this scale (maximum at the first measurement in every setting: no growth)",
         "holds (diverged, excluded: S=512)"),
    ]:
        for v, kk in zip(vals, k):
            rows.append(dict(sweep=sweep, value=v, n_seeds=1, max_lambda_K_1=kk, max_trace_K=3.0,
                             paper_max_lambda_K_1=3.3 if (sweep, v) == ("simplecnn_eta", 0.01) else "",
                             conj1_max_lambda_K_1=v1, conj2_max_trace_K=v2))
    return pd.DataFrame(rows)


def _new_claims():
    return [
        C.Claim("walk", "3.1", "Fig. 1", "the loss interpolated between iterates is convex",
                "VGG-11, CIFAR-10", "", "0.98 of steps", True, "", "fig1_interpolation.png",
                C.cite("Sec. 3.1", "the loss interpolation ... is convex")),
        C.Claim("walk", "3.2", "Fig. 3", "barriers are rare", "VGG-11, CIFAR-10", "", "", None,
                "one epoch only", "sub dir/fig3 barriers.png", C.cite("Sec. 3.2", "almost never crosses")),
        C.Claim("walk", "3.1", "Fig. 2", "a second claim of Sec. 3.1 | with a pipe", "VGG-11", "", "1",
                False, "step 4 -> 5: 0.3 -> 0.1 beyond 1.96 se", quote=C.cite("Sec. 3.1", "second")),
    ]


@pytest.fixture
def figures(tmp_path):
    root = tmp_path / "figures"
    (root / "break_even").mkdir(parents=True)
    OLD_BREAK_EVEN.to_csv(root / "break_even" / "claims.csv", index=False)
    (root / "break_even" / "fig2_lambda_h_delta_loss_vs_lambda_k.png").write_bytes(b"png")
    (root / "conjectures").mkdir()  # notebook 2's old wide table is no longer read: reported
    _old_conjectures().to_csv(root / "conjectures" / "claims.csv", index=False)
    C.save_claims(_new_claims(), root / "walk")
    (root / "empty_section").mkdir()  # no claims.csv: ignored
    return root


def test_legacy_formats_are_read_with_their_verdicts_and_reasons(figures):
    be = L.load_section(figures / "break_even", "01_break_even")
    assert be.legacy and be.notebook == "01_break_even"
    assert [c.verdict for c in be.claims] == ["holds", "does not hold", "holds"]
    a, d, e = be.claims
    assert a.ours.startswith("lr=0.01: r=0.97") and a.paper == "break_even"
    assert "Pearson r >= 0.5" in a.reason  # the old criterion is kept with the claim
    assert e.reason.startswith("lr=0.01 never reached it") and e.figure == "Eq. (1)"
    assert a.figure_file == "fig2_lambda_h_delta_loss_vs_lambda_k.png"
    assert d.figure_file == ""  # fig3 is not in the folder: no dead link
    with pytest.raises(ValueError, match="neither a claims file"):
        L.load_section(figures / "conjectures")
    new = L.load_section(figures / "walk")
    assert not new.legacy and [c.claim for c in new.claims] == [c.claim for c in _new_claims()]


def test_overview_counts_groups_links_and_legacy_marks(figures):
    res = L.overview(figures, order=ORDER)
    text = (figures / "CLAIMS.md").read_text()
    assert res["path"] == figures / "CLAIMS.md"
    assert res["sections"] == ["break_even", "walk"]  # notebook order, empty folder left out
    assert res["legacy"] == ["break_even"] and list(res["errors"]) == ["conjectures/claims.csv"]
    assert res["n_claims"] == 3 + 3
    assert res["counts"] == {"holds": 2 + 1, "does not hold": 1 + 1, "not testable at this scale": 1}
    # counts at the top: per paper and in total
    top = text[: text.index("## The Break-Even")]
    assert re.search(r"\| The Break-Even Point[^|]*\| 2 \| 1 \| 0 \| 3 \|", top)
    assert re.search(r"\| A Walk with SGD[^|]*\| 1 \| 1 \| 1 \| 3 \|", top)
    assert "| **all papers** | **3** | **2** | **1** | **6** |" in top
    assert "3 of the 6 claims" in top and L.LEGACY_NOTE in top
    assert "![Claims x verdict](claims_ledger.png)" in top
    # grouped by paper (papers' order), then section; old-rule sections say so, new ones do not
    heads = re.findall(r"^##+ .*$", text, re.M)
    papers = [h for h in heads if h.startswith("## ") and h[3:] in C.PAPER_TITLES.values()]
    assert heads.index("## What does not hold") < heads.index("## " + C.PAPER_TITLES["break_even"])
    assert [p[3:] for p in papers] == [C.PAPER_TITLES["break_even"], C.PAPER_TITLES["walk"]]
    sec = [h for h in heads if h.startswith("### ")]
    assert sec[-2:] == ["### Sec. 3.1 · notebook `04_walk_with_sgd` (`walk/claims.csv`)",
                        "### Sec. 3.2 · notebook `04_walk_with_sgd` (`walk/claims.csv`)"]
    walk = text[text.index("## " + C.PAPER_TITLES["walk"]):]
    assert "Old rule" not in walk
    assert text.count("**Old rule:**") == sum(h.endswith("(`break_even/claims.csv`)") for h in sec)
    s31 = walk[walk.index("### Sec. 3.1"):walk.index("### Sec. 3.2")]
    assert "2 claims: 1 holds, 1 does not hold, 0 not testable" in s31
    assert "with a pipe" in s31 and "\\| with a pipe" in s31  # a pipe in a cell does not break the table
    # links: figure_file (relative to the section folder) -> relative to figures/, existing files only
    assert "[Fig. 1](walk/fig1_interpolation.png)" in text
    assert "[Fig. 3](walk/sub%20dir/fig3%20barriers.png)" in text
    assert "[Fig. 2](break_even/fig2_lambda_h_delta_loss_vs_lambda_k.png)" in text
    assert "[Fig. 3](" not in text.split("## " + C.PAPER_TITLES["walk"])[0]  # old fig3 absent: plain text
    # the picture
    assert [p.name for p in res["pictures"]] == ["claims_ledger.png", "claims_ledger.pdf"]
    assert all(p.stat().st_size > 1000 for p in res["pictures"])
    # each row shows the sentence it tests
    assert '| Sec. 3.1: "the loss interpolation ... is convex" |' in walk


def test_overview_lists_failures_first_and_absences_per_paper(figures):
    absent = [C.Absence("walk", "5", "Fig. 9", "Tiny-ImageNet panels", C.cite("Sec. 5", "on Tiny-ImageNet"),
                        "Tiny-ImageNet is not in the offline data"),
              C.Absence("sharpest", "4", "Fig. 7", "ResNet-56 | wide", C.cite("Sec. 4", "x"), "GPU only")]
    res = L.overview(figures, order=ORDER, absences=absent)
    text = (figures / "CLAIMS.md").read_text()
    assert res["n_absent"] == 2
    top = text[: text.index("## What does not hold")]
    assert "2 claims not tested" in top and "not tested (why stated)" in top
    assert re.search(r"\| A Walk with SGD[^|]*\| 1 \| 1 \| 1 \| 3 \| 1 \|", top)
    assert re.search(r"\| DNN's Sharpest[^|]*\| 0 \| 0 \| 0 \| 0 \| 1 \|", top)  # absences only
    # the failures, one line each, before the papers' tables
    fails = text[text.index("## What does not hold"): text.index("**Unreadable claims files**")]
    lines = [x for x in fails.splitlines() if x.startswith("- ")]
    assert len(lines) == 2 and any("with a pipe" in x and "beyond 1.96 se" in x for x in lines)
    assert "barriers are rare" not in fails  # not testable rows are not failures
    walk = text[text.index("## " + C.PAPER_TITLES["walk"]):]
    assert "### Not tested here (1 claim of this paper)" in walk
    assert "| Sec. 5 | Fig. 9 | Tiny-ImageNet panels |" in walk and "not in the offline data |" in walk
    assert "ResNet-56 \\| wide" in text[text.index("## " + C.PAPER_TITLES["sharpest"]):]


def test_picture_labels_are_short():
    c = C.Claim("break_even", "4.2", "Fig. 4", "Conjecture 1: the maximum lambda_K^1 is smaller for a larger "
                "eta, read on the smoothed curve after the transient", "SimpleCNN, CIFAR-10, eta=0.1", "", 1,
                True)
    label = L._row_label(c)
    assert len(label) <= 60 and label.startswith("Fig. 4: Conj. 1: max λ1_K falls with") and \
        label.endswith("[SimpleCNN, η=0.1]"), label


def test_overview_reports_unreadable_files_and_empty_roots(tmp_path):
    root = tmp_path / "figures"
    (root / "nsgd").mkdir(parents=True)
    (root / "nsgd" / "claims.csv").write_text("foo,bar\n1,2\n")
    C.save_claims(_new_claims()[:1], root / "walk")
    res = L.overview(root, picture=False)
    assert res["n_claims"] == 1 and res["pictures"] == []
    assert list(res["errors"]) == ["nsgd/claims.csv"]
    assert "neither a claims file" in res["errors"]["nsgd/claims.csv"]
    text = (root / "CLAIMS.md").read_text()
    assert "Unreadable claims files" in text and "`nsgd/claims.csv`" in text and "claims_ledger" not in text
    empty = tmp_path / "nothing"
    empty.mkdir()
    res = L.overview(empty)
    assert res["n_claims"] == 0 and res["pictures"] == []
    assert "No claims file found" in (empty / "CLAIMS.md").read_text()
    with pytest.raises(FileNotFoundError, match="no figures folder"):
        L.overview(tmp_path / "missing")
    with pytest.raises(ValueError, match="cannot read the verdict"):
        L._split_verdict("mostly holds")


def test_reproduce_writes_the_ledger_after_the_notebooks(tmp_path):
    import nbformat

    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\noutput_root = "../figures"')
    params.metadata["tags"] = ["parameters"]
    body = ("from breakeven_utils.reporting import claims as C\n"
            "C.save_claims([C.Claim('walk', '3.1', 'Fig. 1', 'a claim', 'tiny', '', 1.0, True, "
            "quote='Sec. 3.1: \\'a claim\\'')],"
            " output_root + '/tiny')")
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, nbdir / "01_tiny.ipynb")
    out = tmp_path / "figures"
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "reproduce.py"), "--profile", "cpu",
                           "--notebook-dir", str(nbdir), "--out", str(out)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "claims ledger:" in proc.stdout and "1 claims: 1 holds" in proc.stdout
    assert "| **all papers** | **1** | **0** | **0** | **1** |" in (out / "CLAIMS.md").read_text()
    assert (out / "claims_ledger.png").is_file()
    assert json.loads((out / "manifest.json").read_text())["notebooks"]["01_tiny"]["status"] == "ok"


def test_reproduce_publishes_an_executed_notebook_only_into_the_committed_notebooks(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    import nbformat
    import reproduce

    assert reproduce.publish_target(REPO / "notebooks" / "01_break_even.ipynb", REPO / "figures") == \
        REPO / "notebooks" / "01_break_even.ipynb"
    assert reproduce.publish_target(REPO / "notebooks" / "01_break_even.ipynb", tmp_path) is None
    assert reproduce.publish_target(tmp_path / "01_break_even.ipynb", REPO / "figures") is None
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"  # a comment\noutput_root = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(profile)")]
    src = tmp_path / "01_tiny.ipynb"
    nbformat.write(nb, src)
    entry = reproduce.run_notebook(src, tmp_path / "figs", "cpu", "python3", 120, False, publish_to=src)
    assert entry["status"] == "ok" and entry["executed_notebook"] == "../01_tiny.ipynb"
    done = nbformat.read(src, as_version=4)
    figs = tmp_path / "figs"
    assert done.cells[0].source == f'profile = "cpu"  # a comment\noutput_root = "{figs}"'
    assert len(done.cells) == 2 and done.cells[1].outputs[0].text == "cpu\n"
    assert not list((tmp_path / "figs").rglob("*.ipynb"))  # the executed copy was moved, not kept


def test_runs_line_says_profile_overrides_code_and_stale_runs(tmp_path):
    assert L.runs_line(tmp_path, ["01_break_even"]) == ""  # no manifest
    entry = {"profile": "cpu", "git_commit": "0123456789abcdef", "git_dirty": False, "runs_by_other_code": 0}
    m = {"notebooks": {"01_break_even": entry, "02_conjectures": dict(entry),
                       "03_batchnorm": {**entry, "overrides": {"seeds": [0, 1]}, "git_dirty": True,
                                        "runs_by_other_code": 2}}}
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    assert L.runs_line(tmp_path, ["01_break_even", "02_conjectures"]) == \
        "Drawn by all 2 notebooks: profile `cpu`, code 0123456 (`manifest.json`)."
    line = L.runs_line(tmp_path, ["01_break_even", "02_conjectures", "03_batchnorm"])
    assert "01_break_even, 02_conjectures: profile `cpu`, code 0123456" in line
    assert "03_batchnorm: profile `cpu` with overrides `seeds=[0, 1]`, code 0123456+changes" in line
    assert "2 of the runs were computed by other code" in line
