"""Notebook 5's runs per profile: the one-cycle schedule (Fig. 15), VGG-11 at the paper
profile (Fig. 3, 15, 16), ResNet-32 with BatchNorm probed in inference mode (Fig. 12)."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from breakeven_utils.core import profiles
from breakeven_utils.papers.sharpest_nsgd import analysis as sn_analysis
from breakeven_utils.papers.sharpest_nsgd import claims as sn_claims
from breakeven_utils.papers.sharpest_nsgd import runs as sn_runs
from breakeven_utils.papers.sharpest_nsgd import settings as sn_settings
from breakeven_utils.papers.sharpest_nsgd import sharpest
from breakeven_utils.recorder import RunConfig
from breakeven_utils.reporting import claims as cl

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = torch.float64


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_profile_runs_the_three_schedules_with_smiths_one_cycle(profile):
    s = sn_settings.settings(profile)
    ex = sn_runs.experiments(s)
    sc = ex["schedules"]
    assert list(sc) == ["constant", "step", "one cycle"]
    oc = sc["one cycle"]
    bpe = s["n_train"] // s["trajectory"]["batch_size"]
    assert oc.schedule == "one_cycle" and oc.model in ("simple_cnn",)
    assert oc.one_cycle_iters == s["schedules"]["max_epochs"] * bpe == oc.max_epochs * bpe
    assert oc.clr_base_lr == pytest.approx(oc.lr / 10) and oc.min_lr == pytest.approx(oc.lr / 1000)
    assert oc.one_cycle_anneal is None  # the schedule's default 0.1
    # the three differ only in their schedule
    strip = ("schedule", "milestones", "one_cycle_iters", "clr_base_lr", "min_lr")
    d = [{k: v for k, v in c.to_dict().items() if k not in strip} for c in sc.values()]
    assert d[0] == d[1] == d[2]
    assert "one_cycle" not in sn_runs.skipped(s)
    assert {c.key() for c in sc.values()} <= {c.key() for c in sn_runs.run_configs(profile)}


def test_unknown_schedule_kind_fails_before_training():
    with pytest.raises(ValueError, match="unknown schedule kinds .*'cosine'"):
        sn_runs.run_configs("cpu", schedules={"lr": 0.1, "max_epochs": 4, "milestones": [2],
                                           "kinds": ["constant", "cosine"]})


def test_paper_profile_runs_vgg11_in_fig3_fig15_fig16():
    s = sn_settings.settings("paper")
    ex = sn_runs.experiments(s)
    t = s["trajectory"]
    assert set(ex["fig3_vgg11_eta"]) == set(t["fig3_lrs"])
    assert set(ex["fig3_vgg11_S"]) == set(t["fig3_batch_sizes"])
    for g in ("fig3_vgg11_eta", "fig3_vgg11_S", "schedules_vgg11", "momentum_vgg11"):
        assert ex[g] and all(c.model == "vgg11" for c in ex[g].values()), g
    assert list(ex["schedules_vgg11"]) == ["constant", "step", "one cycle"]
    # Fig. 16: eta = 0.1, S = 128 (the caption); SimpleCNN keeps its own settings beside it
    assert {c.lr for c in ex["momentum_vgg11"].values()} == {0.1}
    assert {c.batch_size for c in ex["momentum_vgg11"].values()} == {128}
    assert sorted(ex["momentum_vgg11"]) == sorted(s["momentum"]["betas"])
    assert {c.lr for c in ex["momentum"].values()} == {s["momentum"]["lr"]}
    assert "probe_vgg11" not in ex and "vgg11" not in sn_runs.skipped(s)
    keys = {c.key() for c in sn_runs.run_configs("paper")}
    assert all(c.key() in keys for g in ex for c in ex[g].values())
    for p in ("smoke", "cpu"):  # the smaller profiles say why they leave it out
        sp = sn_settings.settings(p)
        assert "vgg11" in sn_runs.skipped(sp) and not any("vgg11" in g for g in sn_runs.experiments(sp))


def test_paper_profile_probes_resnet32_with_batchnorm_for_fig12():
    s = sn_settings.settings("paper")
    ex = sn_runs.experiments(s)
    assert list(ex["probe_resnet32_bn"]) == [0.0025]
    c = ex["probe_resnet32_bn"][0.0025]
    assert c.model == "resnet32" and c.model_kwargs == {"bn": True}
    assert c.batch_size == 128 and c.lr == 0.0025
    assert "sharpest_probe" in c.metrics and c.hessian_which == "LM"
    assert c.hessian_bn_mode == "eval"  # the probes' Hessian on the inference graph
    assert c.weight_decay == 0.005  # L2 as the ResNet-32 runs
    assert not any(g.startswith("fig3_resnet32_bn") for g in ex)  # probes only
    assert profiles.PROFILES["paper"]["nsgd"]["models"]["resnet32_bn"]["figure"] == "12"
    for p in ("smoke", "cpu"):
        assert "resnet32_bn" in sn_runs.skipped(sn_settings.settings(p))


def _bn_problem(n=64):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.Tanh(),
                      nn.Linear(6, 3)).double()
    bn = m[2]
    with torch.no_grad():  # running statistics far from any batch's: train and eval modes differ
        bn.running_mean.copy_(torch.linspace(-1, 1, 6, dtype=F64))
        bn.running_var.copy_(torch.linspace(0.5, 3, 6, dtype=F64))
    return m, nn.CrossEntropyLoss(), torch.randn(n, 3, 2, 2, dtype=F64), torch.randint(0, 3, (n,))


def test_probes_of_a_batchnorm_model_use_the_inference_graph():
    """Fig. 12: eigenpairs, mini-batch projections and the loss lines all in eval mode
    (running statistics), leaving the model's mode and buffers as they were."""
    model, loss_fn, x, y = _bn_problem()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    h = sharpest.top_eigs(model, loss_fn, (x, y), 3, tol=1e-10, batch_size=None, bn_mode="eval")
    r = sharpest.probe(model, loss_fn, (x, y), (x, y), h, 0.1, batch_size=16, n_batches=4,
                       directions=(1, 3), seed=2)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched

    with torch.no_grad():  # by hand, on copies (a train-mode forward updates running stats)
        L_eval = float(loss_fn(copy.deepcopy(model).eval()(x), y))
        L_train = float(loss_fn(copy.deepcopy(model).train()(x), y))
    ks = np.asarray(sharpest.K_GRID)
    assert r["lines"][1][ks == 0][0] == pytest.approx(L_eval, rel=1e-12)
    assert abs(L_eval - L_train) > 1e-3  # the two graphs differ, so the check has teeth
    # dense eval-mode Hessian: the top eigenvalue matches
    params = [p for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in params])
    buffers = {n: b for n, b in model.named_buffers()}
    model.eval()

    def f(vec):
        ps, i = {}, 0
        for n, p in zip(names, params):
            ps[n] = vec[i:i + p.numel()].view_as(p)
            i += p.numel()
        return loss_fn(torch.func.functional_call(model, (ps, buffers), (x,)), y)

    H = torch.autograd.functional.hessian(f, theta)
    model.train()
    w = torch.linalg.eigvalsh(H)
    top = w[torch.argsort(w.abs(), descending=True)[:3]]
    assert torch.allclose(h.values.to(F64), top, rtol=1e-6, atol=1e-9)
    # the typical step uses eval-mode mini-batch gradients
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(2))
    model.eval()
    g = []
    for j in range(4):
        b = perm[j * 16:(j + 1) * 16]
        gs = torch.autograd.grad(loss_fn(model(x[b]), y[b]), params)
        g.append(torch.cat([t.reshape(-1) for t in gs]))
    model.train()
    proj = torch.stack(g) @ h.vectors[0].to(F64)
    assert r["dtheta"][1] == pytest.approx(0.1 * float(proj.abs().mean()), rel=1e-10)


def test_first_decrease_of_the_schedules():

    base = dict(dataset="synthetic", n_train=80, batch_size=8, lr=0.1, max_epochs=2, metrics=("train",))
    assert sn_analysis.first_decrease(RunConfig(**base), 10, 20) is None
    assert sn_analysis.first_decrease(RunConfig(**base, schedule="step", milestones=(1,)), 10, 20) == 10
    # one cycle, T = 20, f = 0.1: the peak at h = 9, lower from t = 10 on
    oc = RunConfig(**base, schedule="one_cycle", one_cycle_iters=20)
    assert sn_analysis.first_decrease(oc, 10, 20) == 10
    assert sn_analysis.first_decrease(oc, 10, 9) is None  # not within the first 9 iterations


def _rho_run(values, every=10):
    return pd.DataFrame({"iteration": np.arange(len(values)) * every, "rho_H": values})


@pytest.mark.parametrize("step, cycle, verdict", [
    ([1, 6, 9, 8, 8, 7, 6, 6], [1, 6, 9, 8, 8, 7.5, 7, 7], "holds"),  # both fall > 5% after the drop
    ([1, 6, 9, 8, 8, 9, 10, 11], [1, 6, 9, 8, 8, 7, 6, 6], "does not hold"),  # step: rises > 5%
    ([1, 6, 9, 8, 8, 8, 8.1, 8.2], [1, 6, 9, 8, 8, 7, 6, 6], "not testable at this scale"),  # within 5%
])
def test_schedule_claim_verdicts(step, cycle, verdict):

    runs = {"constant": _rho_run([1, 6, 9, 9.5, 10, 10, 10, 10]), "step": _rho_run(step),
            "one cycle": _rho_run(cycle)}
    c = sn_claims.schedule_claim(runs, {"constant": None, "step": 45, "one cycle": 45}, "test")
    assert c.verdict.startswith(verdict) and c.verdict in cl.VERDICTS
    # the last measurement before iteration 45 is at 40 (rho 8, after the peak 9 at 20); the end
    # the mean of the last 2
    assert f"step: rho change after iter 45 = {100 * (np.mean(step[-2:]) / 8 - 1):+.1f}%" in c.ours
    assert "constant: rho change after iter 45 = +0.0%" in c.ours


def test_schedule_claim_needs_the_drop_after_the_peak():
    """Issue 20: the cpu run dropped eta at epoch 2 of 4, while rho(H) was still rising; the
    paper drops it after the peak (and hedges that rho(H) can grow again)."""
    runs = {"step": _rho_run([1, 4, 8, 6, 5, 5])}  # still rising up to the drop at 25
    c = sn_claims.schedule_claim(runs, {"step": 25}, "test")
    assert c.verdict == "not testable at this scale" and "still rising, before its peak: step" in c.reason


def test_schedule_block_naming_a_model_the_profile_skips_fails_clearly():
    with pytest.raises(ValueError, match=r"schedules: models \['vgg11'\] are not run at this profile"):
        sn_runs.run_configs("cpu", schedules={"lr": 0.1, "max_epochs": 4, "milestones": [2],
                                           "models": ["simplecnn", "vgg11"]})


def test_cpu_profile_runs_resnet32_in_the_fig3_sweeps_only():
    # issue 11: Fig. 3 for SimpleCNN and ResNet-32 at cpu; ResNet-32 shortened (family keys)
    s = sn_settings.settings("cpu")
    ex = sn_runs.experiments(s)
    assert "resnet32" not in sn_runs.skipped(s)
    for grp in ("fig3_resnet32_eta", "fig3_resnet32_S"):
        for c in ex[grp].values():
            assert c.model == "resnet32" and c.model_kwargs == {"bn": False}
            assert c.max_epochs == s["models"]["resnet32"]["max_epochs"] < s["trajectory"]["max_epochs"]
            assert c.hessian_k == 2 and c.weight_decay == 0.005
    assert set(ex["fig3_resnet32_eta"]) == set(s["trajectory"]["fig3_lrs"])
    c = ex["fig3_simplecnn_eta"][0.1]  # SimpleCNN keeps the trajectory block's settings
    assert c.max_epochs == s["trajectory"]["max_epochs"] and c.hessian_k == s["top_k"]
    assert not any(g.endswith("resnet32") and not g.startswith("fig3") for g in ex)
