"""Nudged SGD and the Fig. 5 variants (sharpest-directions paper Sec. 3.3, 4) against dense
linear algebra on small models, and through the recorder (bit-exact SGD, resume, divergence)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from breakeven_utils.core.params import trainable_parameters
from breakeven_utils.papers.sharpest_nsgd import analysis as sn_analysis
from breakeven_utils.papers.sharpest_nsgd import claims as sn_claims
from breakeven_utils.papers.sharpest_nsgd import rules as sn_rules
from breakeven_utils.papers.sharpest_nsgd import runs as sn_runs
from breakeven_utils.papers.sharpest_nsgd import sharpest
from breakeven_utils.recorder import RuleContext, RunConfig, train
from breakeven_utils.store import runs as records

F64 = torch.float64


def cnn_problem(n=24):
    """A 3x6x6 -> 3-class CNN small enough (D = 185) for dense Hessians in milliseconds."""
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(18, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    return m, nn.CrossEntropyLoss(), torch.randn(n, 3, 6, 6, dtype=F64), torch.randint(0, 3, (n,))

pytestmark = pytest.mark.usefixtures("one_thread")


def _dense_hessian(model, loss_fn, x, y, wd=0.0):
    named = trainable_parameters(model)
    names = [n for n, _ in named]
    theta = torch.cat([p.detach().reshape(-1) for _, p in named])
    shapes = [p.shape for _, p in named]

    def f(vec):
        ps, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            ps[n] = vec[i:i + k].view(s)
            i += k
        out = torch.func.functional_call(model, ps, (x,))
        return loss_fn(out, y) + 0.5 * wd * vec.pow(2).sum()

    return torch.autograd.functional.hessian(f, theta)


def _dense_top(H, k):
    w, V = torch.linalg.eigh(H)
    order = torch.argsort(w.abs(), descending=True)[:k]
    return w[order], V[:, order].T


def _orthonormal(k, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=F64))
    return q.T.contiguous()


# ----------------------------------------------------------------------------- nudged_direction


@pytest.mark.parametrize("gamma", [0.01, 0.1, 1.0, 10.0])
def test_nudged_direction_equals_dense_projection(gamma):
    D, K = 40, 5
    P = _orthonormal(K, D)
    g = torch.randn(D, dtype=F64, generator=torch.Generator().manual_seed(3))
    dense = (torch.eye(D, dtype=F64) + (gamma - 1) * P.T @ P) @ g
    out = sn_rules.nudged_direction(g, P, gamma)
    assert torch.allclose(out, dense, atol=1e-12)
    # exactly the component in span(P) is scaled by gamma, the rest unchanged
    assert torch.allclose(P @ out, gamma * (P @ g), atol=1e-12)
    rest = lambda v: v - P.T @ (P @ v)  # noqa: E731
    assert torch.allclose(rest(out), rest(g), atol=1e-12)
    assert out is not g


def test_nudged_direction_gamma_one_is_an_exact_copy():
    g = torch.tensor([1.0, -0.0, 3.0e-30, float("1e30")])
    out = sn_rules.nudged_direction(g, _orthonormal(2, 4).float(), 1.0)
    assert torch.equal(out, g) and out.data_ptr() != g.data_ptr()
    assert math.copysign(1, float(out[1])) == -1.0  # the sign of -0.0 is kept


@pytest.mark.parametrize("gamma", [0, -1.0, float("nan"), float("inf"), True])
def test_nudged_direction_rejects_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        sn_rules.nudged_direction(torch.zeros(4), _orthonormal(1, 4), gamma)


def test_nudged_direction_rejects_bad_shapes():
    with pytest.raises(ValueError, match="flat"):
        sn_rules.nudged_direction(torch.zeros(2, 2), _orthonormal(1, 4), 0.5)
    with pytest.raises(ValueError, match="P must be"):
        sn_rules.nudged_direction(torch.zeros(5), _orthonormal(1, 4), 0.5)


# ----------------------------------------------------------------------------- top_eigs


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_top_eigs_match_the_dense_hessian_with_l2(wd):
    model, loss_fn, x, y = cnn_problem()
    H = _dense_hessian(model, loss_fn, x, y, wd)
    w, V = _dense_top(H, 3)
    h = sharpest.top_eigs(model, loss_fn, (x, y), 3, which="LM", tol=1e-8, weight_decay=wd, batch_size=None)
    assert torch.allclose(h.values, w, rtol=1e-6)
    cos = (h.vectors @ V.T).diagonal().abs()
    assert torch.all(cos > 1 - 1e-6), cos


def test_top_eigs_l2_mask_applies_to_the_masked_coordinates_only():
    model, loss_fn, x, y = cnn_problem()
    D = sum(p.numel() for p in model.parameters())
    mask = torch.zeros(D, dtype=F64)
    mask[:60] = 1.0
    H = _dense_hessian(model, loss_fn, x, y) + 0.3 * torch.diag(mask)
    w, _ = _dense_top(H, 2)
    h = sharpest.top_eigs(model, loss_fn, (x, y), 2, tol=1e-8, weight_decay=0.3, mask=mask, batch_size=None)
    assert torch.allclose(h.values, w, rtol=1e-6)


def test_top_eigs_rejects_k_beyond_parameters_or_lanczos_space():
    model, loss_fn, x, y = cnn_problem(n=8)
    D = sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="parameters"):
        sharpest.top_eigs(model, loss_fn, (x, y), D)
    with pytest.raises(ValueError, match="Lanczos space"):
        sharpest.top_eigs(model, loss_fn, (x, y), 20, max_hvp=10)


# ----------------------------------------------------------------------------- rules on a dense problem


class _Data:
    def __init__(self, x, y):
        m = type("S", (), {"x": x, "y": y})()
        self.measure = self.train = m


def _rule_setup(name, wd=0.0, momentum=0.0, **kw):
    model, loss_fn, x, y = cnn_problem()
    cfg = RunConfig(max_epochs=1, weight_decay=wd, momentum=momentum, update_rule=name,
                    rule_kwargs=kw, hessian_tol=1e-8, n_measure=None)
    params = [p for p in model.parameters()]
    rule = sn_rules.NSGDRule if name == "nsgd" else {"sgd_top": sn_rules.SGDTopRule,
                                                  "sgd_no_top": sn_rules.SGDNoTopRule,
                                                  "sgd_constant_top": sn_rules.SGDConstantTopRule}[name]
    r = rule(params, cfg, **kw)
    ctx = RuleContext(model, loss_fn, _Data(x, y), cfg)
    return model, loss_fn, x, y, params, r, ctx


def _grads(model, loss_fn, x, y):
    for p in model.parameters():
        p.grad = None
    loss_fn(model(x), y).backward()
    return [p.grad for p in model.parameters()]


def _flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts])


@pytest.mark.parametrize("gamma,wd", [(0.1, 0.0), (10.0, 0.0), (0.01, 0.02)])
def test_nsgd_step_scales_exactly_the_component_along_the_dense_eigenvectors(gamma, wd):
    model, loss_fn, x, y, params, rule, ctx = _rule_setup("nsgd", wd=wd, gamma=gamma, k=3,
                                                          refresh="epoch")
    H = _dense_hessian(model, loss_fn, x, y, wd)
    _, V = _dense_top(H, 3)
    rule.on_epoch_start(ctx)
    assert rule.log[0]["warm"] is False and rule.log[0]["n_hvp"] > 0
    # the rule's P spans the dense top-3 eigenvectors
    assert torch.allclose(rule.P.T @ rule.P, V.T @ V, atol=1e-6)
    theta = _flat(params).clone()
    g = _flat(_grads(model, loss_fn, x, y)) + wd * theta
    rule(params, [p.grad for p in params], 0.1, ctx)
    step = (theta - _flat(params)) / 0.1
    dense = (torch.eye(len(g), dtype=F64) + (gamma - 1) * V.T @ V) @ g
    assert torch.allclose(step, dense, atol=1e-6 * float(g.norm()))


def test_variants_definitions_against_the_dense_top_eigenvector():
    lr = 0.05
    for name, expect in (("sgd_top", lambda g, e: (g @ e) * e),
                         ("sgd_no_top", lambda g, e: g - (g @ e) * e)):
        model, loss_fn, x, y, params, rule, ctx = _rule_setup(name)
        _, V = _dense_top(_dense_hessian(model, loss_fn, x, y), 1)
        theta = _flat(params).clone()
        g = _flat(_grads(model, loss_fn, x, y))
        rule(params, [p.grad for p in params], lr, ctx)
        step = (theta - _flat(params)) / lr
        assert torch.allclose(step, expect(g, V[0]), atol=1e-7 * float(g.norm())), name


def test_constant_top_keeps_the_first_eigenvector_while_e1_moves():
    lr = 0.5
    model, loss_fn, x, y, params, rule, ctx = _rule_setup("sgd_constant_top")
    _, V0 = _dense_top(_dense_hessian(model, loss_fn, x, y), 1)
    gen = torch.Generator().manual_seed(5)
    for t in range(3):
        ctx.iteration = t
        theta = _flat(params).clone()
        g = _flat(_grads(model, loss_fn, x, y))
        _, Vt = _dense_top(_dense_hessian(model, loss_fn, x, y), 1)
        rule(params, [p.grad for p in params], lr, ctx)
        step = (theta - _flat(params)) / lr
        assert torch.allclose(step, (g @ V0[0]) * V0[0], atol=1e-7 * float(g.norm()))
        # e1(t) is tracked (for rho(H)) and logged, warm-started after the first refresh
        assert abs(float(rule.P[0] @ Vt[0])) > 1 - 1e-6
        with torch.no_grad():  # drift off the e1(0) line, so that e1(t) moves
            for p in params:
                p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    assert [e["warm"] for e in rule.log] == [False, True, True]
    assert abs(float(V0[0] @ Vt[0])) < 0.99  # e1 really moved: the test can tell them apart


def test_warm_started_refresh_needs_fewer_hvps_and_matches_dense():
    model, loss_fn, x, y, params, rule, ctx = _rule_setup("nsgd", gamma=0.5, k=2, refresh="epoch")
    rule.on_epoch_start(ctx)
    for _ in range(2):  # two small steps, then a warm refresh
        rule(params, _grads(model, loss_fn, x, y), 0.01, ctx)
    cold = rule.log[0]["n_hvp"]
    ctx.epoch = 1
    rule.on_epoch_start(ctx)
    warm = rule.log[1]
    assert warm["warm"] and warm["n_hvp"] < cold, rule.log
    w, V = _dense_top(_dense_hessian(model, loss_fn, x, y), 2)
    assert np.allclose(warm["values"], w.numpy(), rtol=1e-6)
    assert torch.allclose(rule.P.T @ rule.P, V.T @ V, atol=1e-6)


# ----------------------------------------------------------------------------- bad input


def _cfg(**kw):
    base = dict(dataset="synthetic", n_train=256, n_val=64, n_test=64, n_measure=64, model="simple_cnn",
                model_kwargs={"image_size": 8, "width": [4, 4, 8, 8], "hidden": 16}, lr=0.05,
                batch_size=32, max_epochs=2, metrics=("train",), measure_every=4, hessian_n=64)
    base.update(kw)
    return RunConfig(**base)


@pytest.mark.parametrize("kw,match", [
    ({"gamma": 0.0}, "gamma"), ({"gamma": -1.0}, "gamma"), ({"gamma": float("nan")}, "gamma"),
    ({"k": 0}, "k must be"), ({"k": 301}, "Lanczos space"), ({"k": 20, "max_hvp": 10}, "Lanczos space"),
    ({"refresh": 0}, "never"), ({"refresh": None}, "never"), ({"refresh": 1000}, "never refreshes"),
    ({"hessian_n": 65}, "n_measure"), ({"typo": 1}, "unknown rule_kwargs")])
def test_bad_rule_settings_fail_before_training(kw, match):
    with pytest.raises(ValueError, match=match):  # RunConfig validation: before any compute
        _cfg(update_rule="nsgd", rule_kwargs=kw)
    with pytest.raises(ValueError, match=match):
        sn_rules.check_rule_kwargs("nsgd", _cfg(), kw)


def test_k_larger_than_the_parameter_count_fails_before_training():
    cfg = _cfg(model="mlp", model_kwargs={"hidden": [1]}, update_rule="nsgd",
               rule_kwargs={"k": 250, "gamma": 0.5})
    steps = []
    with pytest.raises(ValueError, match="parameters"):
        train(cfg, hooks=[steps.append], progress=False)
    assert steps == []


def test_variants_reject_gamma_and_k():
    with pytest.raises(ValueError, match="no gamma"):
        _cfg(update_rule="sgd_top", rule_kwargs={"gamma": 0.5})
    with pytest.raises(ValueError, match="k must be 1"):
        _cfg(update_rule="sgd_no_top", rule_kwargs={"k": 2})


# ----------------------------------------------------------------------------- through the recorder


def _final_state(cfg):
    state = {}

    def hook(info):
        state.update({k: v.clone() for k, v in info["model"].state_dict().items()})
    out = train(cfg, hooks=[hook], progress=False)
    return out, state


@pytest.mark.parametrize("extra", [{}, {"momentum": 0.9, "weight_decay": 5e-3}])
def test_nsgd_gamma_one_is_sgd_bit_for_bit(extra):
    o1, s1 = _final_state(_cfg(**extra))
    o2, s2 = _final_state(_cfg(update_rule="nsgd", rule_kwargs={"gamma": 1.0, "k": 2}, **extra))
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert [r["train_loss"] for r in o1.rows] == [r["train_loss"] for r in o2.rows]
    # and the refreshes did happen (one per epoch)
    log = o2.info["rule_log"]
    assert [e["iteration"] for e in log] == [0, 8] and [e["warm"] for e in log] == [False, True]


def test_nsgd_gamma_below_one_differs_from_sgd():
    _, s1 = _final_state(_cfg())
    _, s2 = _final_state(_cfg(update_rule="nsgd", rule_kwargs={"gamma": 0.1, "k": 2}))
    assert not all(torch.equal(s1[k], s2[k]) for k in s1)


def test_nsgd_resume_continues_exactly(tmp_path):
    cfg = _cfg(update_rule="nsgd", rule_kwargs={"gamma": 0.1, "k": 2, "refresh": 5},
               metrics=("train", "hessian_top"), hessian_k=2)
    ref = records.run(cfg, tmp_path / "a", progress=False)

    class Kill(Exception):
        pass

    def killer(info):
        if info["iteration"] == 11:
            raise Kill
    with pytest.raises(Kill):
        records.run(cfg, tmp_path / "b", progress=False, hooks=[killer], checkpoint_every=3)
    res = records.run(cfg, tmp_path / "b", progress=False)
    assert res.info["resumed_from"] == 9
    assert ref.metrics.equals(res.metrics)
    assert sn_analysis.rule_log(ref) == sn_analysis.rule_log(res)


def test_diverged_nsgd_run_is_recorded_as_diverged(tmp_path):
    cfg = _cfg(lr=1e5, update_rule="nsgd", rule_kwargs={"gamma": 10.0, "k": 2})
    res = records.run(cfg, tmp_path, progress=False)
    assert res.status == "diverged" and res.diverged_at is not None
    row = sn_analysis.table_row(res)
    assert row["status"] == "diverged"


def test_run_configs_build_and_validate_for_every_profile():
    for profile in ("smoke", "cpu", "paper"):
        cfgs = sn_runs.run_configs(profile)
        assert len({c.key() for c in cfgs}) == len(cfgs) > 10
        rules = {c.rule_name for c in cfgs}
        assert set(sn_rules.RULE_NAMES) <= rules
        restarts = [c for c in cfgs if c.init_from is not None]
        assert restarts and all(c.init_from["config"]["lr"] == 0.005 or profile == "smoke"
                                for c in restarts)


# ----------------------------------------------------------------------------- restart from a parent


def test_init_from_starts_at_the_parents_state_and_keys_the_parent(tmp_path):
    parent = _cfg(max_epochs=2)
    child = parent.replace(update_rule="sgd_no_top", init_from={"config": parent.to_dict(), "iteration": 5},
                           max_epochs=None, max_iters=3, metrics=("train", "dist_init"), measure_every=1)
    want = {}

    def cap(info):
        if info["iteration"] == 5:
            want.update({k: v.clone() for k, v in info["model"].state_dict().items()})
    train(parent, hooks=[cap], progress=False)
    res = records.run(child, tmp_path, progress=False)  # no stored state: the parent is replayed
    st = records.state_at(parent, 5, tmp_path)
    assert all(torch.equal(st["model"][k], want[k]) for k in want)
    assert res.metrics["dist_init"].iloc[0] == 0.0  # theta_0 of the child is the restart point
    first = train(parent.replace(max_iters=5, max_epochs=None, measure_every=0, measure_every_epochs=0,
                                 measure_at=(5,)), progress=False).rows[-1]["train_loss"]
    assert res.metrics["train_loss"].iloc[0] == pytest.approx(first, rel=1e-6)
    # the parent is part of the key; a config without init_from keeps its old key
    other = child.replace(init_from={"config": parent.replace(lr=0.02).to_dict(), "iteration": 5})
    assert other.key() != child.key() and child.key() != child.replace(init_from=None).key()
    assert "init_from" not in parent.to_dict()


def test_save_state_hook_keeps_the_state_so_no_replay_is_needed(tmp_path):
    parent = _cfg(max_epochs=1)
    records.run(parent, tmp_path, progress=False, hooks=[records.save_state_hook(parent, 4, tmp_path)])
    path = tmp_path / parent.key() / "states" / "iter_4.pt"
    assert path.exists()
    calls = []
    orig = records.train
    records.train = lambda *a, **k: calls.append(1) or orig(*a, **k)
    try:
        records.state_at(parent, 4, tmp_path)
    finally:
        records.train = orig
    assert calls == []


@pytest.mark.parametrize("bad,match", [
    ({"config": {}, "iteration": 0}, "positive integer"), ({"iteration": 3}, "exactly the keys"),
    ("x", "must be a dict"),
    ({"config": {"model": "mlp", "max_epochs": 1}, "iteration": 2}, "would not fit")])
def test_bad_init_from_fails_in_the_config(bad, match):
    with pytest.raises(ValueError, match=match):
        _cfg(init_from=bad)


def test_state_at_rejects_a_run_that_ends_before_the_iteration(tmp_path):
    parent = _cfg(max_iters=3, max_epochs=None)
    with pytest.raises(ValueError, match="before iteration 10"):
        records.state_at(parent, 10, tmp_path, progress=False)


def test_hessian_top_reuses_the_nsgd_refresh_at_epoch_starts():
    cfg = _cfg(update_rule="nsgd", rule_kwargs={"gamma": 0.1, "k": 3}, metrics=("train", "hessian_top"),
               hessian_k=3, hessian_which="LM", measure_every=0, measure_every_epochs=1, max_epochs=2)
    out = train(cfg, progress=False)
    log = out.info["rule_log"]
    rows = out.rows
    assert [r["iteration"] for r in rows] == [0, 8, 16]
    for r, e in zip(rows[:2], log):
        assert r["H_n_hvp"] == 0 and [r[f"H_eig_{i}"] for i in (1, 2, 3)] == e["values"]
    assert rows[2]["H_n_hvp"] > 0  # the last state has no refresh: measured
    # the same measurement without reuse agrees to the Lanczos tolerance
    plain = train(cfg.replace(update_rule=None, rule_kwargs={}), progress=False).rows
    assert plain[0]["H_n_hvp"] > 0
    assert rows[0]["H_eig_1"] == pytest.approx(plain[0]["H_eig_1"], rel=1e-3)


def test_table_claims_on_a_hand_made_table():
    t = pd.DataFrame({"run": ["nsgd 0.01", "nsgd 0.1", "nsgd 1", "nsgd 10", "sgd 0.1"],
                      "status": ["done"] * 5, "frob_best": [300.0, 120.0, 8.0, 2.0, 1.0],
                      "test_acc": [0.87, 0.872, 0.864, 0.80, 0.88]})
    sharp, acc = sn_claims.table_claims(t, 10_000, "s", paper_key="table1_simplecnn")
    assert sharp.verdict == "holds" and "307/422" in sharp.paper_value
    assert acc.verdict == "holds"
    t.loc[3, "test_acc"] = 0.866  # gamma = 10 not worse beyond the binomial noise
    assert sn_claims.table_claims(t, 10_000, "s")[1].verdict == "not testable at this scale"
    t.loc[3, "status"] = "diverged"
    sharp, _ = sn_claims.table_claims(t, 10_000, "s")
    assert "diverged: gamma=[10.0]" in sharp.reason


def test_table_claims_need_runs_past_their_best_epoch():
    """A run whose best validation epoch is its last is still improving: Table 1 is read at
    the best epoch of a trained network, so both rows are not testable, never 'does not hold'."""
    t = pd.DataFrame({"run": ["nsgd 0.01", "nsgd 0.1", "nsgd 1", "nsgd 10"], "status": ["done"] * 4,
                      "frob_best": [52.6, 52.9, 58.9, 40.8], "test_acc": [0.262, 0.257, 0.259, 0.238],
                      "epochs": [30.0] * 4, "best_epoch": [20.0, 22.0, 25.0, 18.0]})
    sharp, _ = sn_claims.table_claims(t, 500, "s")
    assert sharp.verdict == "does not hold"                  # trained past its best epoch: judged
    t["epochs"], t["best_epoch"] = 3.0, [3.0, 3.0, 2.0, 3.0]
    assert sn_claims.still_improving(t).startswith("still improving")
    sharp, acc = sn_claims.table_claims(t, 500, "s")
    assert sharp.verdict == acc.verdict == "not testable at this scale"
    assert "nsgd 0.01, nsgd 0.1, nsgd 10" in sharp.reason and "does not hold" in sharp.reason


def test_nsgd_sharpness_compares_each_gamma_below_one_with_sgd():
    """Issue 20: the paper's own SimpleCNN row is 307 / 126 / 8 / 54 at gamma 0.01 / 0.1 / 1 / 10;
    its text compares gamma < 1 with gamma = 1, so gamma = 10 above gamma = 1 decides nothing."""
    assert sn_claims.sharper_than_sgd({0.01: 307.0, 0.1: 126.0, 1.0: 8.0, 10.0: 54.0})[0] == "holds"
    assert sn_claims.sharper_than_sgd({0.01: 307.0, 0.1: 6.0, 1.0: 8.0})[0] == "does not hold"
    v, why = sn_claims.sharper_than_sgd({0.01: 8.2, 1.0: 8.0})
    assert v == "not testable at this scale" and why.startswith("within noise")
    assert sn_claims.sharper_than_sgd({0.01: 8.2})[0] == "not testable at this scale"
