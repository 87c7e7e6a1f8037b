"""Runs stored before the package was split into layers (commit 4b8f699, flat modules) are
found by the same keys and load unchanged after it; recomputing them with today's code gives
the same trajectory. ``tests/data/pre_refactor_store`` was written by that commit's
``records.run`` (one thread): a plain SGD run measuring lambda_H^1 and K, and a run of a
plugin update rule (``sgd_top``, sharpest-directions paper) with a plugin metric."""
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from breakeven_utils.recorder import RunConfig, train
from breakeven_utils.store import runs

STORE = Path(__file__).resolve().parents[1] / "data" / "pre_refactor_store"
BASE = dict(dataset="synthetic", n_train=128, n_val=32, n_test=32, n_measure=32, model="mlp",
            model_kwargs={"hidden": (8,)}, batch_size=32, lr=0.05, max_epochs=1, measure_every=2, K_L=4)
CONFIGS = {
    "ba87e7d17d8fd343cb56": dict(BASE, metrics=("train", "lambda_H", "K")),
    "88d8250eb08fa13ce9c2": dict(BASE, metrics=("train", "hessian_top"), update_rule="sgd_top",
                                 rule_kwargs={"k": 1, "refresh": "epoch"}),
}


@pytest.fixture
def store(tmp_path):
    shutil.copytree(STORE, tmp_path / "runs")
    return tmp_path / "runs"


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_a_run_stored_before_the_split_has_the_same_key_and_loads_without_recomputing(store, key):
    c = RunConfig(**CONFIGS[key])
    assert c.key() == key
    assert RunConfig.from_dict(json.loads((store / key / "config.json").read_text())["config"]) == c
    before = (store / key / "status.json").read_bytes()
    res = runs.run(c, store, progress=False)  # done in the store: loaded, not trained
    assert res.status == "done" and (store / key / "status.json").read_bytes() == before
    stored = pd.read_parquet(STORE / key / "metrics.parquet")
    pd.testing.assert_frame_equal(res.metrics, stored, check_exact=True)
    assert runs.load(key, store).config == c


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_todays_code_recomputes_the_same_trajectory(key):
    c = RunConfig(**CONFIGS[key])
    out = pd.DataFrame(train(c, progress=False).rows).rename(columns={"lr": "lr_t"})
    stored = pd.read_parquet(STORE / key / "metrics.parquet")
    assert list(out.columns) == list(stored.columns)
    assert out["iteration"].tolist() == stored["iteration"].tolist()
    pd.testing.assert_frame_equal(out, stored, check_exact=False, rtol=1e-6, atol=1e-9)
