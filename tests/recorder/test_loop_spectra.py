"""The recorder's Fig. 3 / Fig. 9 metrics: H spectrum at the largest lambda_H^1 and lambda_K^1 at M = 1."""
import numpy as np
import pandas as pd
import pytest
import torch

from breakeven_utils.curvature import gradient_covariance, hessian_eigs
from breakeven_utils.recorder import RunConfig, build_run_model, load_run_data, train


def _config(**kw):
    base = dict(dataset="synthetic", n_train=256, n_val=32, n_test=32, n_measure=48,
                model="simple_cnn", model_kwargs={"image_size": 8, "width": (4, 4, 8, 8), "hidden": 16},
                lr=0.2, batch_size=32, max_iters=24, measure_every=8,
                metrics=("train", "lambda_H", "K1", "H_spectrum"), K1_L=40, spectrum_k=3,
                hessian_tol=1e-6)
    base.update(kw)
    return RunConfig(**base)


def test_h_spectrum_is_taken_at_the_largest_lambda_h():
    c = _config()
    out = train(c, progress=False)
    df = pd.DataFrame(out.rows)
    t_max = int(df.loc[df["lambda_H_1"].idxmax(), "iteration"])
    assert out.arrays["H_spectrum_iteration"] == [t_max]
    spec = out.arrays["H_spectrum"][0]
    assert len(spec) == 3 and np.all(np.diff(spec) <= 0)
    assert spec[0] == pytest.approx(df["lambda_H_1"].max(), rel=1e-4)

    # recompute exactly: replay the run to t_max and take the top-3 eigenvalues there
    captured = {}

    def grab(state):
        if state["iteration"] == t_max:
            captured["params"] = [p.detach().clone() for p in state["model"].parameters()]

    cfg = c.replace(metrics=("train",))
    data = load_run_data(cfg)
    if t_max > 0:
        train(cfg, data=data, progress=False, hooks=[grab])
        model = build_run_model(cfg, data, 'cpu')
        with torch.no_grad():
            for p, q in zip(model.parameters(), captured["params"]):
                p.copy_(q)
    else:
        model = build_run_model(cfg, data, 'cpu')
    ref = hessian_eigs(model, torch.nn.CrossEntropyLoss(), (data.measure.x, data.measure.y), k=3,
                       tol=1e-8)
    np.testing.assert_allclose(spec, ref.values.numpy(), rtol=1e-4)


def test_lambda_k1_is_the_per_example_gram_estimate():
    c = _config(metrics=("train", "K1"), max_iters=8, measure_at=(0,))
    out = train(c, progress=False)
    data = load_run_data(c)
    model = build_run_model(c, data, 'cpu')
    gc = gradient_covariance(model, torch.nn.CrossEntropyLoss(), (data.train.x, data.train.y),
                             L=40, M=1, seed=c.seed * 1_000_003 + 0 + 7)
    assert out.rows[0]["lambda_K1_1"] == pytest.approx(float(gc.lambda_1), rel=1e-6)


def test_bad_spectrum_settings_fail_early():
    with pytest.raises(ValueError, match="lambda_H"):
        _config(metrics=("train", "H_spectrum"))
    with pytest.raises(ValueError, match="K1_L"):
        _config(K1_L=10_000)
    with pytest.raises(ValueError, match="normalize"):
        _config(normalize="zca")


def test_k_larger_than_the_training_set_fails_before_training():
    with pytest.raises(ValueError, match="K_L\\*K_M"):
        _config(metrics=("train", "K"), K_L=25, K_M=128, n_train=2_500)
    with pytest.raises(ValueError, match="K_L\\*K_M"):  # K_M None: the batch size
        _config(metrics=("train", "K"), K_L=25, batch_size=128, n_train=3_000)
    _config(metrics=("train", "K"), K_L=8, K_M=32, n_train=256)  # 256 = 8 * 32 is fine
