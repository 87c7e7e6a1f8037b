"""store.preflight: every run of a profile built, its model constructed, one forward and backward
pass of its first batch; failures recorded, missing data stood in for, large full-batch passes flagged."""
import pandas as pd
import pytest

from breakeven_utils.papers import registry
from breakeven_utils.recorder import RunConfig
from breakeven_utils.store import preflight as P

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(dataset="synthetic", n_train=256, n_val=32, n_test=32, n_measure=32, model="mlp",
            model_kwargs={"hidden": (8,)}, batch_size=32, lr=0.05, max_epochs=1, metrics=("train",))


def test_smoke_profile_of_notebook_1_builds_and_steps():
    df = P.preflight(registry.notebook_runs("smoke", ["01_break_even"]), progress=False)
    assert len(df) == 3 and df["ok"].all() and set(df["data_source"]) == {"on disk"}
    assert (df["parameters"] > 0).all() and (df["batch"] == 32).all()
    text = P.report(df, "smoke", 1.0)
    assert "3 runs built and checked in 1 s: 3 ok, 0 failed" in text and "## Signatures" in text


def test_a_failing_run_is_recorded_and_the_others_go_on():
    bad = RunConfig(**{**TINY, "model": "simple_cnn", "model_kwargs": {"no_such_argument": 1}})
    df = P.preflight({"nb": [bad, RunConfig(**TINY)]}, progress=False)
    assert sorted(df["ok"].tolist()) == [False, True]
    err = df.loc[~df["ok"], "error"].item()
    assert "no_such_argument" in err and "TypeError" in err
    assert "## Failures" in P.report(df, "x", 0.0)


def test_missing_data_is_stood_in_for_with_its_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("BREAKEVEN_DATA", str(tmp_path))  # nothing on disk
    c = RunConfig(**{**TINY, "dataset": "mnist", "n_train": 2048, "batch_size": 100})
    x, y, k, source = P.first_batch(c, {})
    assert x.shape == (100, 1, 28, 28) and k == 10 and source.startswith("stand-in")
    df = P.preflight({"nb": [c]}, progress=False)
    assert df["ok"].all() and "mnist (1 runs)" in P.report(df, "x", 0.0)


def test_a_full_batch_pass_larger_than_max_pass_is_flagged(tmp_path, monkeypatch):
    c = RunConfig(**{**TINY, "n_train": 2048, "optimizer": "gd"})
    check = P.check_run("nb", c, {})
    assert check.ok and check.batch == P.MAX_PASS
    assert "full-batch gradient over 2,048 examples in one pass (gd_chunk unset)" in check.note
    assert P.check_run("nb", RunConfig(**{**TINY, "n_train": 2048, "optimizer": "gd", "gd_chunk": 512}),
                       {}).note == ""
    assert "## Warnings" in P.report(pd.DataFrame([check.__dict__]), "x", 0.0)
