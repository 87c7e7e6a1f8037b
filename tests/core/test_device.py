"""device='auto' (CUDA when present, else CPU) and BREAKEVEN_DEVICE, for runs and data."""
import json

import pytest
import torch

from breakeven_utils.core import device
from breakeven_utils.core.data import load_data
from breakeven_utils.papers.registry import notebook_runs
from breakeven_utils.recorder import RunConfig, train
from breakeven_utils.store import runs as records
from breakeven_utils.store import sweeps

TINY = dict(dataset="synthetic", n_train=128, n_val=32, n_test=32, n_measure=32, model="mlp",
            model_kwargs={"hidden": (8,)}, batch_size=32, lr=0.05, max_epochs=1, measure_every=2,
            metrics=("train", "lambda_H", "dist_init"))

pytestmark = pytest.mark.usefixtures("one_thread")


def test_auto_is_cuda_when_present_else_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_device("auto") == device.resolve_device(None) == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        device.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.resolve_device("auto") == "cuda" and device.resolve_device("CUDA:0") == "cuda:0"
    with pytest.raises(ValueError, match="only 1 CUDA"):
        device.resolve_device("cuda:3")


def test_unknown_device_names_are_errors():
    for bad in ("tpu", "gpu0", "mps"):
        with pytest.raises(ValueError, match="auto"):
            device.resolve_device(bad)
    assert device.resolve_device(torch.device("cpu")) == "cpu"


def test_device_from_env(monkeypatch):
    monkeypatch.delenv("BREAKEVEN_DEVICE", raising=False)
    assert device.device_from_env() == device.resolve_device("auto")
    monkeypatch.setenv("BREAKEVEN_DEVICE", "cpu")
    assert device.device_from_env() == "cpu"
    monkeypatch.setenv("BREAKEVEN_DEVICE", "tpu")
    with pytest.raises(ValueError, match="unknown device"):
        device.device_from_env()


def test_runs_data_and_train_accept_auto(tmp_path):
    c = RunConfig(**TINY)
    res = records.run(c, tmp_path, device="auto", progress=False)
    st = json.loads((tmp_path / c.key() / "status.json").read_text())
    assert st["device"] == device.resolve_device("auto") and res.status == "done"
    data = load_data("synthetic", n_train=128, n_val=32, n_test=32, n_measure=32, device="auto")
    assert str(data.train.x.device).startswith(device.resolve_device("auto"))
    # with data given, 'auto' follows the data's device
    out = train(c, data=load_data("synthetic", n_train=128, n_val=32, n_test=32, n_measure=32),
                progress=False)
    assert [r["train_loss"] for r in out.rows] == res.metrics["train_loss"].tolist()
    df = sweeps.sweep([c], tmp_path, device="auto", progress=False)
    assert df["key"].unique().tolist() == [c.key()]


def test_every_smoke_run_of_every_notebook_keeps_to_its_device(tmp_path, test_device):
    """Issue 22, item 2: the 70 smoke runs of the five notebooks (every model, update rule,
    schedule and metric the notebooks use, parents before their children) under
    ``device_discipline`` on the test device (``make device-check`` sets cuda): a tensor
    made without ``device=``, or a call mixing devices, fails the run with the call named."""
    dev = str(test_device)
    seen = set()
    for nb, cfgs in notebook_runs("smoke").items():
        for c in cfgs:
            if c.key() in seen:
                continue
            seen.add(c.key())
            with device.device_discipline():
                res = records.run(c, tmp_path, device=dev, checkpoint_every=None, progress=False)
            assert res.status == "done", (nb, c.key(), res.status)
    assert len(seen) >= 60


def test_a_cifar10_run_keeps_to_its_device(tmp_path, cifar_root, test_device):
    """The real data path (JPEG copy or the original, cached arrays, augmentation) under
    ``device_discipline``: the smoke runs use synthetic data."""
    c = RunConfig(dataset="cifar10", n_train=256, n_val=64, n_test=64, n_measure=64, model="simple_cnn",
                  batch_size=32, lr=0.01, max_iters=4, measure_every=2, augment=True,
                  metrics=("train", "val", "lambda_H", "K", "dist_init"), K_L=2, K_M=16)
    with device.device_discipline():
        res = records.run(c, tmp_path, device=str(test_device), checkpoint_every=None, progress=False)
    assert res.status == "done" and list(res.metrics["iteration"]) == [0, 2, 4]
    assert res.metrics[["lambda_H_1", "lambda_K_1"]].notna().all().all()
