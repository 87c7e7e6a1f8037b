"""papers.notebook: the parameters of a notebook checked before any compute, unknown names
papermill injected, and where a run with overrides writes and how it says so."""

from pathlib import Path

import pytest

from breakeven_utils.papers import notebook as nbmod
from breakeven_utils.papers.notebook import OVERRIDE_FIGURES, check_parameters, injected_names, start
from breakeven_utils.reporting.manifest import in_project


def test_notebook_parameters_of_the_wrong_type_name_the_parameter():
    msg = "parameter 'jobs': expected a positive integer or None, got str 'abc'"
    with pytest.raises(ValueError, match=msg):
        check_parameters("cpu", jobs="abc")
    with pytest.raises(ValueError, match="parameter 'jobs'"):
        check_parameters("cpu", jobs=0)
    with pytest.raises(ValueError, match="parameter 'run_store': expected a path"):
        check_parameters("cpu", run_store=3)
    with pytest.raises(ValueError, match="parameter 'profile'"):
        check_parameters(None)
    check_parameters("cpu", "figs", "runs", 2)


def test_overrides_must_be_a_dict():
    with pytest.raises(ValueError, match="parameter 'overrides': expected a dict of profile keys"):
        check_parameters("cpu", overrides=["seeds", 3])
    check_parameters("cpu", overrides={"seeds": [0, 1]})


def test_injected_names_reads_papermills_cell_from_the_history():
    history = ["", 'profile = "cpu"\noutput_root = None', '# Parameters\nprofle = "cpu"\njobs = 2\n',
               "x = 1", "# Parameters\nnot python (", "print(1)"]
    assert injected_names(history) == ["profle", "jobs"]
    assert injected_names([]) == [] and injected_names() == []  # no IPython kernel in pytest


def test_an_unknown_parameter_name_fails_before_anything_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(nbmod, "injected_names", lambda: ["profle"])
    with pytest.raises(ValueError, match="unknown parameter 'profle' .*parameters are profile, output_root, "
                                         "run_store, jobs, overrides"):
        start("01_break_even", "smoke", str(tmp_path), str(tmp_path / "runs"))
    assert not (tmp_path / "break_even").exists()  # nothing written


def test_overrides_keep_away_from_the_committed_figures_and_show_in_footer_and_manifest(tmp_path):
    nb = start("01_break_even", "cpu", run_store=str(tmp_path), overrides={"seeds": [0, 1]})
    assert Path(nb.output_root) == Path(in_project(OVERRIDE_FIGURES))
    assert nb.out.parent == Path(nb.output_root)
    assert Path(nb.output_root) != Path(in_project("figures"))
    foot = nb.provenance("CIFAR-10", [0, 1])
    assert "profile cpu with seeds=[0, 1]" in foot and foot.endswith(nb.code) and nb.code.startswith("code ")
    # the committed profile without overrides writes figures/; an explicit output_root wins
    plain = start("01_break_even", "cpu", run_store=str(tmp_path))
    assert Path(plain.output_root) == Path(in_project("figures"))
    mine = start("01_break_even", "cpu", str(tmp_path / "mine"), str(tmp_path), overrides={"seeds": [0]})
    assert Path(mine.output_root) == tmp_path / "mine"
    entry = mine.write_manifest({"profile": "cpu"})["notebooks"]["01_break_even"]
    assert entry["overrides"] == {"seeds": [0]} and entry["git_commit"]
