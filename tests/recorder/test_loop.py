"""Training loop: determinism, schedules, GD, GD + noise, update rules, metrics, bad input."""
import math

import numpy as np
import pytest
import torch

from breakeven_utils.recorder import RunConfig, Schedule, config_from_profile, measurement_iterations, train
from breakeven_utils.recorder import loop as T
from breakeven_utils.recorder import metrics as M
from breakeven_utils.recorder import rules as R

TINY = dict(dataset="synthetic", n_train=256, n_val=64, n_test=64, n_measure=32, model="mlp",
            model_kwargs={"hidden": (16,)}, batch_size=32, lr=0.05, max_epochs=1,
            measure_every=4, K_L=4, metrics=("train",))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return T.load_run_data(RunConfig(**TINY))


def tiny(**kw):
    return RunConfig(**{**TINY, **kw})


def same_rows(a, b):
    """Exact equality of measurement rows (NaN == NaN)."""
    import pandas as pd
    pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b), check_exact=True)


# ----------------------------------------------------------------------------- determinism


RICH = ("train", "val", "test", "delta_loss", "lambda_H", "K", "dist_init", "param_norm",
        "grad_cos", "grad_norm", "softmax", "breakeven_lhs")


def test_same_seed_gives_identical_metrics(data):
    c = tiny(metrics=RICH, momentum=0.9, max_epochs=2)
    a = train(c, data=data, progress=False)
    b = train(c, data=data, progress=False)
    assert a.status == b.status == "done"
    assert len(a.rows) == len(measurement_iterations(c, 8, 16)) == 5
    same_rows(a.rows, b.rows)  # exact, every column
    for k in a.arrays:
        np.testing.assert_array_equal(np.asarray(a.arrays[k]), np.asarray(b.arrays[k]))
    np.testing.assert_array_equal(np.stack(a.softmax), np.stack(b.softmax))
    other = train(c.replace(seed=1), data=data, progress=False)
    assert other.rows[0]["train_loss"] != a.rows[0]["train_loss"]  # the seed matters


# ----------------------------------------------------------------------------- schedules


def test_schedules_give_documented_learning_rates():
    bpe = 10
    s = Schedule(tiny(lr=0.1), bpe)
    assert [s(t) for t in (0, 7, 1000)] == [0.1, 0.1, 0.1]

    s = Schedule(tiny(lr=0.1, schedule="step", milestones=(2, 4), gamma=0.1), bpe)
    assert s(19) == 0.1  # epoch 1
    assert s(20) == pytest.approx(0.01)  # epoch 2: first decay
    assert s(39) == pytest.approx(0.01)
    assert s(40) == pytest.approx(0.001)

    s = Schedule(tiny(lr=0.1, schedule="cyclic", clr_base_lr=0.01, clr_step_size=5), bpe)
    expect = {0: 0.01, 2: 0.01 + 0.09 * 0.4, 5: 0.1, 7: 0.01 + 0.09 * 0.6, 10: 0.01, 15: 0.1}
    for t, lr in expect.items():
        assert s(t) == pytest.approx(lr), t
    assert Schedule(tiny(lr=0.1, schedule="cyclic", clr_step_size=5), bpe)(0) == pytest.approx(0.01)

    s = Schedule(tiny(lr=0.1, schedule="trapezoid", warmup_iters=4, flat_iters=2,
                      anneal_iters=4), bpe)
    expect = {0: 0.0, 2: 0.05, 4: 0.1, 5: 0.1, 6: 0.1, 8: 0.05, 10: 0.0, 50: 0.0}
    for t, lr in expect.items():
        assert s(t) == pytest.approx(lr), t


def test_plateau_schedule_matches_torch_reduce_on_plateau():
    c = tiny(lr=0.1, schedule="plateau", plateau_factor=0.5, plateau_patience=2,
             plateau_threshold=1e-4, min_lr=0.01)
    s = Schedule(c, 10)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, threshold=1e-4,
                                                     min_lr=0.01)
    losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8,
              0.8, 0.8]
    for i, v in enumerate(losses):
        s.observe(v)
        ref.step(v)
        assert s(10 * (i + 1)) == pytest.approx(opt.param_groups[0]["lr"]), i
    assert s(10 * len(losses)) == pytest.approx(0.01)  # reached min_lr


def test_the_loop_uses_the_schedule(data):
    c = tiny(lr=0.1, schedule="cyclic", clr_base_lr=0.02, clr_step_size=3, metrics=())
    seen = []
    out = train(c, data=data, progress=False, hooks=[lambda i: seen.append(i["lr"])])
    assert out.status == "done"
    s = Schedule(c, 8)
    assert seen == [s(t) for t in range(8)]


def test_step_schedule_in_loop(data):
    c = tiny(lr=0.1, schedule="step", milestones=(1,), max_epochs=2, metrics=())
    seen = []
    train(c, data=data, progress=False, hooks=[lambda i: seen.append(i["lr"])])
    assert seen[:8] == [0.1] * 8 and seen[8:] == pytest.approx([0.01] * 8)


# ----------------------------------------------------------------------------- GD and noise


def test_gd_uses_the_whole_training_set_each_step(data):
    c = tiny(optimizer="gd", lr=0.5, max_epochs=None, max_iters=3, metrics=())
    sizes = []
    out = train(c, data=data, progress=False, hooks=[lambda i: sizes.append(i["batch_size"])])
    assert out.status == "done" and sizes == [len(data.train)] * 3

    # one GD step equals theta_0 - lr * (full-batch gradient at theta_0)
    model = T.build_run_model(c, data, "cpu")
    loss = torch.nn.functional.cross_entropy(model(data.train.x), data.train.y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    expect = [p.detach() - 0.5 * g for p, g in zip(model.parameters(), grads)]
    state = {}

    def grab(info):
        if info["iteration"] == 1:
            state["p"] = [p.detach().clone() for p in info["model"].parameters()]

    train(c.replace(max_iters=1), data=data, progress=False, hooks=[grab])
    for a, b in zip(state["p"], expect):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gd_chunked_gradient_equals_full_batch(data):
    a = train(tiny(optimizer="gd", max_iters=2, metrics=("train",), measure_every=1), data=data,
              progress=False)
    b = train(tiny(optimizer="gd", max_iters=2, metrics=("train",), measure_every=1, gd_chunk=100),
              data=data, progress=False)
    assert [r["train_loss"] for r in a.rows] == pytest.approx([r["train_loss"] for r in b.rows],
                                                              rel=1e-5)


def test_max_gradient_variance_matches_its_definition(data):
    c = tiny()
    model = T.build_run_model(c, data, "cpu")
    x, y = data.measure.x, data.measure.y
    per_ex = []
    for i in range(len(y)):
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        per_ex.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            loss, list(model.parameters()))]).double())
    G = torch.stack(per_ex)  # n x D
    expect = float(G.var(0, unbiased=False).max())
    got = R.max_gradient_variance(model, torch.nn.CrossEntropyLoss(), x, y)
    assert got == pytest.approx(expect, rel=1e-6)


def test_gd_noise_variance_matches_its_definition(data):
    c = tiny(optimizer="gd_noise", noise_factor=0.1, max_iters=2, metrics=())
    out = train(c, data=data, progress=False)
    model = T.build_run_model(c, data, "cpu")
    v_max = R.max_gradient_variance(model, torch.nn.CrossEntropyLoss(), data.measure.x,
                                    data.measure.y)
    assert out.info["v_max"] == pytest.approx(v_max, rel=1e-9)
    assert out.info["sigma2"] == pytest.approx(0.1 * v_max, rel=1e-9)

    # the injected noise: zero gradient in, N(0, sigma^2 I) out
    params = [torch.nn.Parameter(torch.zeros(20_000))]
    rule = R.GDNoiseRule(params, c)
    rule.sigma2 = 0.25
    n = rule.direction([torch.zeros(20_000)], None)[0]
    assert float(n.mean()) == pytest.approx(0.0, abs=0.02)
    assert float(n.var()) == pytest.approx(0.25, rel=0.05)
    # and it moves the parameters: GD + noise != GD
    gd = train(c.replace(optimizer="gd", noise_factor=0.0, metrics=("param_norm",),
                         measure_every=1), data=data, progress=False)
    noisy = train(c.replace(metrics=("param_norm",), measure_every=1), data=data, progress=False)
    assert gd.rows[0]["param_norm"] == noisy.rows[0]["param_norm"]
    assert gd.rows[-1]["param_norm"] != noisy.rows[-1]["param_norm"]


# ----------------------------------------------------------------------------- update rules


def test_sgd_rule_matches_torch_sgd():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 5))
    ref = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    cfg = tiny(momentum=0.9, weight_decay=5e-3, weight_decay_on="conv_kernels")
    mask = R.weight_decay_mask(model, "conv_kernels")
    assert mask == [True, False, False, False]
    rule = R.SGDRule(list(model.parameters()), cfg, mask=mask)
    opt = torch.optim.SGD([{"params": [ref[0]], "weight_decay": 5e-3},
                           {"params": ref[1:], "weight_decay": 0.0}], lr=0.1, momentum=0.9)
    for step in range(5):
        grads = [torch.randn_like(p) for p in ref]
        lr = 0.1 / (step + 1)
        for g in opt.param_groups:
            g["lr"] = lr
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        opt.step()
        rule(list(model.parameters()), grads, lr, None)
    for a, b in zip(model.parameters(), ref):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)
    assert R.weight_decay_mask(model, "kernels") == [True, False, True, False]
    assert R.weight_decay_mask(model, "all") == [True] * 4


def test_a_registered_update_rule_plugs_into_the_loop(data):
    @R.register_rule("half_step_test")
    class Half(R.SGDRule):
        def direction(self, grads, ctx):
            return [0.5 * g for g in grads]

    try:
        a = train(tiny(update_rule="half_step_test", lr=0.1, metrics=("train",)), data=data,
                  progress=False)
        b = train(tiny(lr=0.05, metrics=("train",)), data=data, progress=False)
        assert [r["train_loss"] for r in a.rows] == pytest.approx(
            [r["train_loss"] for r in b.rows], rel=1e-5)
    finally:
        R.UPDATE_RULES.pop("half_step_test")


def test_a_registered_metric_is_recorded(data):
    @M.register_metric("n_measure_test")
    def n_measure(ctx):
        return {"n_measure_test": len(ctx.data.measure), "iter_sq": ctx.iteration ** 2}

    try:
        out = train(tiny(metrics=("n_measure_test",)), data=data, progress=False)
        assert [r["n_measure_test"] for r in out.rows] == [32] * len(out.rows)
        assert [r["iter_sq"] for r in out.rows] == [r["iteration"] ** 2 for r in out.rows]
    finally:
        M.USER_METRICS.pop("n_measure_test")


# ----------------------------------------------------------------------------- measurements


def test_measurement_iterations():
    c = tiny(measure_every=5, measure_dense_until=20, measure_every_epochs=1)
    assert measurement_iterations(c, 30, 90) == [0, 5, 10, 15, 30, 60, 90]
    c = tiny(measure_every=5, measure_dense_until=20, measure_every_epochs=0)
    assert measurement_iterations(c, 30, 90) == [0, 5, 10, 15, 90]
    c = tiny(measure_at=(3, 1, 7, 200))
    assert measurement_iterations(c, 30, 90) == [1, 3, 7]
    assert measurement_iterations(tiny(measure_every=4), 8, 16) == [0, 4, 8, 12, 16]


def test_delta_loss_is_loss_before_minus_after_the_step(data):
    out = train(tiny(metrics=("train", "delta_loss", "grad_norm", "grad_cos"), measure_every=1,
                     max_iters=6), data=data, progress=False)
    rows = out.rows
    assert [r["iteration"] for r in rows] == list(range(7))
    for a, b in zip(rows, rows[1:]):
        assert a["delta_loss"] == pytest.approx(a["train_loss"] - b["train_loss"], abs=1e-12)
        assert a["grad_norm"] > 0
    assert all(-1 <= r["grad_cos"] <= 1 for r in rows[1:-1])
    assert math.isnan(rows[0]["grad_cos"])  # no previous gradient
    assert math.isnan(rows[-1]["delta_loss"]) and math.isnan(rows[-1]["grad_norm"])  # no step


def test_target_accuracy_stops_and_thresholds_are_crossed(data):
    out = train(tiny(lr=0.1, max_epochs=10, measure_every=2, target_train_acc=0.5,
                     acc_thresholds=(0.2, 0.4)), data=data, progress=False)
    accs = [r["train_acc"] for r in out.rows]
    assert accs[-1] >= 0.5 and all(a < 0.5 for a in accs[:-1])
    assert out.iterations == out.rows[-1]["iteration"] < 80
    for thr in (0.2, 0.4):
        first = next(r for r in out.rows if r["train_acc"] > thr)
        assert out.crossings[repr(thr)] == {"iteration": first["iteration"],
                                            "epoch": first["epoch"]}


def test_huge_learning_rate_diverges_without_raising(data):
    out = train(tiny(lr=1e4, max_epochs=3, metrics=("train", "lambda_H")), data=data,
                progress=False)
    assert out.status == "diverged"
    assert isinstance(out.diverged_at, int) and 0 < out.diverged_at < 24
    assert all(r["iteration"] <= out.diverged_at for r in out.rows)


def test_curvature_metrics_and_breakeven_lhs(data):
    c = tiny(model="simple_cnn_bn", model_kwargs={"width": (4, 4, 8, 8), "hidden": 16}, K_L=6,
             metrics=("train", "lambda_H", "K", "g_over_g5", "gamma_norm", "breakeven_lhs",
                      "dist_init", "param_norm"), hessian_k=2, max_iters=8)
    out = train(c, data=data, progress=False)
    assert out.status == "done"
    N, S = len(data.train), c.batch_size
    for r in out.rows:
        assert r["lambda_H_1"] >= r["lambda_H_2"]
        lhs = (1 - r["lr"] * r["lambda_H_1"]) ** 2 + r["s2_H"] * r["lr"] ** 2 * (N - S) / (S * (N - 1))
        assert r["breakeven_lhs"] == pytest.approx(lhs)
        assert r["s2_H"] > 0 and r["gamma_norm"] > 0
        assert r["lambda_K_ratio"] == pytest.approx(r["lambda_K_star"] / r["lambda_K_1"])
        assert r["trace_K"] >= r["lambda_K_1"] > 0
    assert all(r["g_over_g5"] >= 1 for r in out.rows[:-1])
    assert out.rows[0]["dist_init"] == 0 and out.rows[-1]["dist_init"] > 0
    assert np.asarray(out.arrays["H_top"]).shape == (len(out.rows), 2)
    assert np.asarray(out.arrays["K_eigs"]).shape == (len(out.rows), 5)
    assert out.rows[0]["lambda_H_1"] == out.arrays["H_top"][0][0]


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("bad, match", [
    (dict(lr=0.0), "lr must be a positive"),
    (dict(lr=-0.1), "lr must be a positive"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=512), "larger than n_train"),
    (dict(model="resnet1000"), "valid options: .*simple_cnn"),
    (dict(dataset="imagenet"), "valid options: .*cifar10"),
    (dict(optimizer="adam"), "valid options: sgd, gd, gd_noise"),
    (dict(schedule="cosine"), "valid options: constant, step"),
    (dict(metrics=("lambda_X",)), "unknown metric"),
    (dict(update_rule="nsgd_missing"), "unknown update rule"),
    (dict(acc_thresholds=(0.5, 1.5)), r"thresholds must be in \[0, 1\]"),
    (dict(target_train_acc=-0.1), r"in \[0, 1\]"),
    (dict(max_epochs=None, max_iters=None), "max_epochs"),
    (dict(momentum=1.0), "momentum"),
    (dict(optimizer="gd_noise"), "noise_factor"),
    (dict(schedule="trapezoid"), "trapezoid"),
    (dict(milestones=(5, 2)), "increasing"),
    (dict(K_L=1), "K_L"),
])
def test_invalid_configurations_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny(**bad)


def test_invalid_runtime_settings_raise_before_training(monkeypatch):
    import breakeven_utils.core.models as models

    def no_build(*a, **k):
        raise AssertionError("a model was built")

    monkeypatch.setattr(models, "build_model", no_build)
    # batch larger than the (default-size) training set: known only after loading
    with pytest.raises(ValueError, match="larger than the"):
        train(tiny(n_train=None, batch_size=100_000), progress=False)
    with pytest.raises(ValueError, match="K_L\\*K_M"):
        train(tiny(metrics=("K",), K_L=20, K_M=32), progress=False)
    with pytest.raises(ValueError, match="checkpoint_every"):
        train(tiny(), progress=False, checkpoint_every="sometimes")


def test_config_key_is_stable_and_canonical():
    a = tiny(lr=1, metrics=("lambda_K_1", "train_acc"))
    b = tiny(lr=1.0, metrics=("train", "K"))
    assert a == b and a.key() == b.key() and hash(a) == hash(b)
    assert a.key() != a.replace(lr=0.5).key()
    assert a.key() != a.key(version="0.0.0")  # the code version is part of the key
    again = RunConfig.from_dict(__import__("json").loads(a.to_json()))
    assert again == a and again.key() == a.key()
    assert len(a.key()) == 20 and a.key() == a.key()
    with pytest.raises(ValueError, match="unknown RunConfig fields"):
        RunConfig.from_dict({**a.to_dict(), "learning_rate": 0.1})


def test_config_from_profile():
    from breakeven_utils.core.profiles import get_profile
    c = config_from_profile(get_profile("smoke"), model="mlp", lr=0.1, batch_size=32)
    assert (c.dataset, c.n_train, c.K_L, c.K_M, c.measure_every) == ("synthetic", 1024, 8, 16, 8)


def test_a_minimal_update_rule_equals_plain_sgd(data):
    @R.register_rule("plain_test")
    class Plain(R.UpdateRule):
        @torch.no_grad()
        def __call__(self, params, grads, lr, ctx):
            for p, g in zip(params, grads):
                p.add_(g, alpha=-lr)

    try:
        a = train(tiny(update_rule="plain_test", metrics=("train", "grad_norm")), data=data,
                  progress=False)
        b = train(tiny(metrics=("train", "grad_norm")), data=data, progress=False)
        same_rows(a.rows, b.rows)
    finally:
        R.UPDATE_RULES.pop("plain_test")


def test_train_leaves_the_global_rng_alone(data):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train(tiny(metrics=()), data=data, progress=False)
    assert torch.equal(torch.get_rng_state(), before)
