"""Outputs of the notebooks: figures, tables, manifest, output folders, and scripts/reproduce.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import breakeven_utils  # noqa: E402
from breakeven_utils.papers.registry import folder_of  # noqa: E402
from breakeven_utils.reporting import manifest as R  # noqa: E402
from breakeven_utils.reporting.plotting import save_figure  # noqa: E402
from breakeven_utils.reporting.tables import save_table  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_figure_folder_of_a_notebook_and_output_dir(tmp_path):
    assert folder_of("01_break_even") == "break_even"
    assert folder_of("notebooks/03_sharpest_directions.ipynb") == "sharpest_directions"  # not registered
    assert folder_of("04_walk_with_sgd") == "walk"
    assert folder_of("notebooks/05_sharpest_directions_nsgd.ipynb") == "nsgd"
    d = R.output_dir("break_even", root=tmp_path / "figs")
    assert d == tmp_path / "figs" / "break_even" and d.is_dir()
    with pytest.raises(ValueError):
        folder_of("01_")


def test_save_figure_png_pdf_stable_names(tmp_path):
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [1, 0])
    paths = save_figure(fig, "fig1_umap_lambda_k.png", tmp_path)
    assert [p.name for p in paths] == ["fig1_umap_lambda_k.png", "fig1_umap_lambda_k.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:4] == b"%PDF"
    assert paths[0].stat().st_size < 200_000
    first = [p.read_bytes() for p in paths]
    save_figure(fig, "fig1_umap_lambda_k", tmp_path)  # overwrite in place, no leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig1_umap_lambda_k.pdf", "fig1_umap_lambda_k.png"]
    assert [p.read_bytes() for p in paths] == first  # no dates embedded: same figure, same bytes
    assert len(save_figure(fig, "only_png", tmp_path, pdf=False)) == 1
    with pytest.raises(ValueError, match="plain name"):
        save_figure(fig, "../escape", tmp_path)
    plt.close(fig)


def test_save_table_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"eta": [0.01, 0.001], "max lambda_K^1": [12.3456789, 40.0], "note": ["a|b", None]})
    csv, md = save_table(df, "summary", tmp_path)
    back = pd.read_csv(csv)
    np.testing.assert_allclose(back["max lambda_K^1"], df["max lambda_K^1"])  # full precision in CSV
    lines = md.read_text().splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:4]] == ["eta", "max lambda_K^1", "note"]
    assert [c.strip()[-1] for c in lines[1].split("|")[1:4]] == [":", ":", "-"]  # numbers right-aligned
    assert "12.35" in lines[2] and "a\\|b" in lines[2]
    assert len(lines) == 4


def test_write_manifest_merges_entries(tmp_path):
    path = tmp_path / "manifest.json"
    R.write_manifest(path, {"01_break_even": {"profile": "cpu", "data": "CIFAR-10, JPEG copy",
                                              "seeds": np.arange(2)}})
    R.write_manifest(path, {"01_break_even": {"wall_time_s": 12.5},
                            "02_other": {"profile": "smoke", "r": np.float32(np.nan)}})
    m = json.loads(path.read_text())
    e = m["notebooks"]["01_break_even"]
    assert e["profile"] == "cpu" and e["seeds"] == [0, 1] and e["wall_time_s"] == 12.5  # merged
    assert e["version"] == breakeven_utils.__version__
    assert len(e["git_commit"]) >= 40 or e["git_commit"] == "unknown"
    assert e["timestamp"].endswith("+00:00")
    assert set(m["notebooks"]) == {"01_break_even", "02_other"} and m["notebooks"]["02_other"]["r"] is None
    assert not [p for p in tmp_path.iterdir() if p.name != "manifest.json"]  # no temp files left
    assert R.git_commit(tmp_path) == "unknown"  # not a git repository


def test_git_dirty_counts_code_changes_not_the_outputs_reproduce_writes(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    assert R.git_dirty(tmp_path) is None  # not a git repository
    git("init", "-q")
    for f in ("pkg/loop.py", "figures/fig.png", "notebooks/01.ipynb", "tests/notebooks/01.ipynb"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("1")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert R.git_dirty(tmp_path) is False
    for f in ("figures/fig.png", "notebooks/01.ipynb", "tests/notebooks/01.ipynb"):
        (tmp_path / f).write_text("2")
    assert R.git_dirty(tmp_path) is False and R.git_dirty(tmp_path / "pkg") is False  # outputs only
    (tmp_path / "pkg" / "loop.py").write_text("2")
    assert R.git_dirty(tmp_path) is True


def _notebook(path: Path, body: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\noutput_root = "../figures"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)


def test_reproduce_runs_notebooks_records_and_continues_past_failure(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir / "01_tiny.ipynb",
              "import sys, pathlib\n"
              "pathlib.Path(output_root, 'ran.txt').write_text(profile + '\\n' + sys.executable)")
    _notebook(nbdir / "02_broken.ipynb", "raise RuntimeError('deliberate failure')")
    (nbdir / "scratch.ipynb").write_text("not a notebook: not NN_*, never run")
    out = tmp_path / "figures"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "reproduce.py"), "--profile", "cpu",
         "--notebook-dir", str(nbdir), "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    profile, exe = (out / "ran.txt").read_text().splitlines()
    assert profile == "cpu"  # -p profile reached the parameters cell
    assert exe == sys.executable  # the kernel is this environment's interpreter
    assert (out / "tiny" / "01_tiny.executed.ipynb").is_file()
    assert (out / "broken" / "02_broken.executed.ipynb").is_file()  # the failure did not stop the run
    m = json.loads((out / "manifest.json").read_text())["notebooks"]
    assert m["01_tiny"]["status"] == "ok" and m["01_tiny"]["profile"] == "cpu"
    assert m["01_tiny"]["wall_time_s"] > 0
    assert m["02_broken"]["status"] == "failed" and "deliberate failure" in m["02_broken"]["error"]
    assert "| 01_tiny" in proc.stdout and "02_broken" in proc.stderr

    # unknown notebook name: clear error before running anything
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "reproduce.py"), "--notebooks", "09_nope",
                           "--notebook-dir", str(nbdir), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "09_nope" in proc.stderr
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "reproduce.py"), "--profile", "huge",
                           "--notebook-dir", str(nbdir), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "unknown profile 'huge'" in proc.stderr


def test_notebook_paths_keep_smoke_outputs_away_from_committed_figures(tmp_path, monkeypatch):
    """Defaults resolve from the project, whatever the working directory (papermill run from
    /tmp once wrote ../runs beside the clone), and print relative to it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BREAKEVEN_RUNS", raising=False)
    assert R.project_root() == REPO
    out, root, store = R.notebook_paths("break_even", "smoke")
    assert Path(root) == REPO / "runs" / "smoke_figures" and Path(store) == REPO / "runs"
    assert out == REPO / "runs" / "smoke_figures" / "break_even" and out.is_dir()
    assert R.shown_path(out) == "runs/smoke_figures/break_even" and R.shown_path(tmp_path) == str(tmp_path)
    out, root, _ = R.notebook_paths("break_even", "cpu")
    assert Path(root) == REPO / "figures" and out == REPO / "figures" / "break_even"
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "runs" / "smoke_figures").exists()
    monkeypatch.setenv("BREAKEVEN_RUNS", str(tmp_path / "store"))
    assert R.notebook_paths("conjectures", "cpu", output_root=tmp_path / "f")[2] == str(tmp_path / "store")


def test_reproduce_smoke_default_output_root_is_not_the_committed_figures():
    # `make reproduce PROFILE=smoke` once overwrote figures/ and CLAIMS.md with smoke output
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce_script", REPO / "scripts" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.default_out("smoke") == (REPO / "runs" / "smoke_figures").resolve()
    assert mod.default_out("cpu") == (REPO / "figures").resolve()
    assert mod.default_out("paper") == (REPO / "figures").resolve()
