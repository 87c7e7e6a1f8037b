"""The registry of paper sections, and every configuration of every profile of every
notebook valid, without training.

An invalid setting (say K_L*K_M above the training-set size, found once after minutes of
training at the cpu profile) fails here, in CI, instead of hours into ``make reproduce``.
"""
from pathlib import Path

import pytest

from breakeven_utils.core.profiles import PROFILES
from breakeven_utils.papers import registry
from breakeven_utils.recorder import RunConfig
from breakeven_utils.store import plan

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = [s.notebook for s in registry.SECTIONS]
#: the modules every section package has (PySDM's paper examples: one shape for every paper)
SHAPE = {"__init__", "settings", "runs", "analysis", "claims", "figures", "quotes"}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_run_of_every_profile_is_valid(notebook, profile):
    runs = registry.notebook_runs(profile, [notebook])[notebook]
    assert isinstance(runs, list) and runs, f"{notebook} launches no run at {profile}"
    keys = [c.key() for c in runs]
    assert len(set(keys)) == len(keys), "run_configs lists a run twice"
    for c in runs:
        assert isinstance(c, RunConfig)
        assert RunConfig.from_dict(c.to_dict()) == c  # what an executor's worker rebuilds
        s = plan.check_config(c)  # the checks train() makes once the data are loaded
        assert s["iterations"] >= 1 and s["n_measurements"] >= 2
        assert s["shape"] is not None, f"plan.INPUT_SHAPES lacks {c.dataset}"


def test_every_notebook_has_a_registry_entry_and_a_section_package_of_the_same_shape():
    names = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert names == set(NOTEBOOKS), names ^ set(NOTEBOOKS)
    for sec in registry.SECTIONS:
        folder = ROOT / Path(*sec.package.split("."))
        modules = {p.stem for p in folder.glob("*.py")}
        assert SHAPE <= modules, (sec.package, SHAPE - modules)
        assert (ROOT / "scripts" / "notebook_sources" / f"{sec.notebook}.py").is_file()
        assert registry.section(sec.folder) is sec
        assert registry.section(f"notebooks/{sec.notebook}.ipynb") is sec
    assert registry.folder_of("04_walk_with_sgd") == "walk"
    assert list(registry.notebook_order()) == [s.folder for s in registry.SECTIONS]


def test_a_section_without_its_runs_module_is_reported_not_failed(monkeypatch):
    future = registry.Section("99_future", "future", "walk", "not written yet",
                              "breakeven_utils.papers.future")
    monkeypatch.setattr(registry, "SECTIONS", registry.SECTIONS + (future,))
    out = registry.notebook_runs("smoke", ["99_future", "01_break_even"])
    assert isinstance(out["99_future"], registry.NotBuilt) and "not built" in out["99_future"]
    assert out["01_break_even"] and not isinstance(out["01_break_even"], registry.NotBuilt)
    with pytest.raises(ValueError, match="unknown notebook"):
        registry.notebook_runs("smoke", ["01_brake_even"])


@pytest.mark.parametrize("section, key, value, match", [
    ("break_even", "K_M", 4_000, "K_L\\*K_M"),  # 25 x 4000 > 45k training images
    ("break_even", "K1_L", 50_000, "K1_L"),
    ("break_even", "hessian_n", 3_000, "hessian_n"),  # above the 2,250-image measurement set
])
def test_an_invalid_paper_setting_fails_before_training(monkeypatch, section, key, value, match):
    monkeypatch.setitem(PROFILES["paper"][section], key, value)
    with pytest.raises(ValueError, match=match) as e:
        registry.notebook_runs("paper", ["01_break_even"])
    assert "01_break_even" in str(e.value) and "'paper'" in str(e.value)


def test_sizes_follow_the_loader_defaults():
    c = RunConfig(dataset="cifar10", n_train=None, n_val=None, n_test=None, n_measure=None,
                  batch_size=128, max_epochs=2, measure_every=10, measure_dense_until=100,
                  metrics=("train",))
    s = plan.sizes(c)
    assert (s["n_train"], s["n_val"], s["n_test"], s["n_measure"]) == (45_000, 5_000, 10_000, 2_250)
    assert s["bpe"] == 351 and s["iterations"] == 702
    # 0, 10, ..., 90, the epoch ends 351 and 702
    assert s["n_measurements"] == 12
    with pytest.raises(ValueError, match="n_train=46000"):
        plan.check_config(c.replace(n_train=46_000))


def test_every_section_states_the_claims_it_does_not_test():
    from breakeven_utils.reporting.claims import PAPER_TITLES, Absence

    absent = registry.absences()
    assert all(isinstance(a, Absence) for a in absent)
    for sec in registry.SECTIONS:
        mine = registry.absences([sec.notebook])
        assert all(a.paper == sec.paper for a in mine), sec.notebook
    # every paper has claims the project does not test (other data sets, models, tasks), each with why
    assert {a.paper for a in absent} == set(PAPER_TITLES)
    assert len({(a.paper, a.claim) for a in absent}) == len(absent), "an absence is listed twice"
