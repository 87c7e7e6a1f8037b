"""The recorder's rooms: run keys unchanged by the split, old imports, the import
stack, and the plugin loader (rules/metrics of notebook modules found by name)."""
import sys
import textwrap
import threading

import pytest

import breakeven_utils
from breakeven_utils.recorder import loop as T
from breakeven_utils.recorder import metrics as M
from breakeven_utils.recorder import plugins
from breakeven_utils.recorder import rules as R
from breakeven_utils.recorder.config import RunConfig
from breakeven_utils.store import runs as records

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(dataset="synthetic", n_train=256, n_val=64, n_test=64, n_measure=32, model="mlp",
            model_kwargs={"hidden": (16,)}, batch_size=32, lr=0.05, max_epochs=2,
            measure_every=4, K_L=4, metrics=("train",))

# ----------------------------------------------------------------------------- run-store keys

# Keys computed with the code before the split (commit ca77c71, one train.py):
#   git archive ca77c71 breakeven_utils | tar -x -C /tmp/orig
#   PYTHONPATH=/tmp/orig python -c "from breakeven_utils.recorder import RunConfig;
#                                   print(RunConfig(**kw).key())"
# for each kw below (package version 0.1.0). Stored runs are found by these keys,
# so a change here would orphan every run in every user's store.
PRE_SPLIT_KEYS = {
    "f3dc85a4b2e441abf331": dict(max_epochs=1),
    "e2e984e60497aa59035d": dict(
        dataset="cifar10", model="simple_cnn", n_train=45000, n_measure=2500, lr=0.01,
        batch_size=128, max_epochs=200, measure_every=10, measure_dense_until=400,
        metrics=("train", "val", "lambda_H", "K", "breakeven_lhs", "H_spectrum"), hessian_k=1,
        hessian_n=2500, K_L=25, acc_thresholds=(0.65, 0.2), spectrum_k=10, seed=3),
    "18dbb2ed35b94e17b25e": dict(
        dataset="synthetic", model="mlp", model_kwargs={"width": 32, "depth": 2},
        optimizer="gd_noise", noise_factor=0.1, lr=0.05, schedule="trapezoid", warmup_iters=5,
        flat_iters=10, anneal_iters=5, min_lr=0.001, max_iters=40, measure_at=(40, 0, 10, 10),
        metrics=("train_loss", "grad_cos", "dist_init", "param_norm")),
    "f02ab092a55accdedbf9": dict(
        dataset="synthetic", model="simple_cnn_bn", optimizer="sgd", lr=0.1, momentum=0.9,
        weight_decay=5e-4, weight_decay_on="conv_kernels", schedule="step", milestones=(2, 4),
        gamma=0.5, rule_kwargs={"nesterov": True}, max_epochs=6, target_train_acc=0.9,
        metrics=("lambda_K_1", "g_over_g5", "softmax", "gamma_norm"), K_M=16, K_L=8,
        softmax_every=2, hessian_method="double_backward", train_eval_on="train"),
}
# the run of TINY with these metrics, stored by records.run before the split (same commit):
# its key and its measured rows (iteration, train_loss, grad_norm)
PRE_SPLIT_RUN = ("4ce03862c9e180e475d2", dict(TINY, metrics=("train", "val", "grad_norm")),
                 [0, 4, 8, 12, 16],
                 [2.9605517387390137, 1.967254877090454, 1.3990751504898071, 1.0235620737075806,
                  0.7564414739608765],
                 [3.7420644760131836, 3.222273111343384, 2.167475461959839, 1.9080853462219238])


@pytest.mark.parametrize("key", sorted(PRE_SPLIT_KEYS))
def test_run_keys_are_those_of_before_the_split(key):
    c = RunConfig(**PRE_SPLIT_KEYS[key])
    assert c.key(version="0.1.0") == key
    assert RunConfig.from_dict(c.to_dict()).key(version="0.1.0") == key


def test_a_stored_run_is_found_by_its_pre_split_key_and_loads(tmp_path):
    key, kw, its, losses, gnorms = PRE_SPLIT_RUN
    c = RunConfig(**kw)
    if breakeven_utils.__version__ != "0.1.0":  # pragma: no cover - keys move with the version
        pytest.skip("package version changed: stored keys change by design")
    assert c.key() == key
    records.run(c, store=tmp_path, progress=False)
    assert (tmp_path / key / "config.json").exists()
    for res in (records.load(key, store=tmp_path), records.load(c, store=tmp_path)):
        assert res.status == "done" and res.config == c
        m = res.metrics
        assert m["iteration"].tolist() == its
        assert m["train_loss"].tolist() == pytest.approx(losses, rel=1e-5)
        assert m["grad_norm"].tolist()[:-1] == pytest.approx(gnorms, rel=1e-5)


# ----------------------------------------------------------------------------- plugins


@pytest.fixture
def plugin_pkg(tmp_path, monkeypatch):
    """A temporary package on sys.path whose modules stand in for the installed plugin entry points."""
    name = f"plugpkg_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_seen", {})
    yield name, root
    for m in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[m]
    R.UPDATE_RULES.pop("plugin_half_test", None)
    M.USER_METRICS.pop("plugin_metric_test", None)


def use_plugins(monkeypatch, *modules):
    monkeypatch.setattr(plugins, "plugin_modules", lambda: tuple(modules))


PLUGIN_SRC = textwrap.dedent("""
    from breakeven_utils.recorder import RunConfig, SGDRule, register_metric, register_rule

    _DEFAULT = RunConfig(max_epochs=1)  # validation while the loader imports this module

    @register_rule("plugin_half_test")
    class Half(SGDRule):
        def direction(self, grads, ctx):
            return [0.5 * g for g in grads]

    @register_metric("plugin_metric_test")
    def iteration_twice(ctx):
        return {"plugin_metric_test": 2 * ctx.iteration}
""")


def test_the_installed_plugins_are_the_sections_that_register_rules_or_metrics():
    mods = plugins.plugin_modules()
    assert mods == ("breakeven_utils.papers.sharpest_nsgd.plugins", "breakeven_utils.papers.walk.plugins")
    plugins.load_plugins()
    assert all(plugins.loaded_plugins().get(m) for m in mods)
    assert {"nsgd", "sgd_top", "sgd_no_top", "sgd_constant_top", "gd_noise_minibatch"} <= set(R.UPDATE_RULES)
    assert {"walk_interp", "walk_step", "hessian_top", "sharpest_probe", "rho_W"} <= set(M.USER_METRICS)


def test_no_plugin_installed_loads_nothing(plugin_pkg, monkeypatch):
    use_plugins(monkeypatch)
    plugins.load_plugins()
    assert plugins.loaded_plugins() == {}
    RunConfig(**TINY)  # validation calls the loader: nothing to find, nothing raised


def test_a_plugin_rule_and_metric_are_found_by_name_without_importing_them(plugin_pkg, monkeypatch):
    name, root = plugin_pkg
    (root / "myplug.py").write_text(PLUGIN_SRC)
    use_plugins(monkeypatch, f"{name}.myplug")
    assert "plugin_half_test" not in R.UPDATE_RULES
    c = RunConfig(**{**TINY, "update_rule": "plugin_half_test",
                     "metrics": ("train", "plugin_metric_test")})
    assert c.metrics == ("train", "plugin_metric_test")
    assert f"{name}.myplug" in sys.modules
    # loaded once: a second call does not import again (cheap after the first call)
    del sys.modules[f"{name}.myplug"]
    plugins.load_plugins()
    assert f"{name}.myplug" not in sys.modules

    # a config that skipped validation (unpickled in a sweep worker): the loop loads the plugin
    R.UPDATE_RULES.pop("plugin_half_test")
    M.USER_METRICS.pop("plugin_metric_test")
    monkeypatch.setattr(plugins, "_seen", {})
    data = T.load_run_data(c)
    out = T.train(c, data=data, progress=False)
    assert [r["plugin_metric_test"] for r in out.rows] == [2 * r["iteration"] for r in out.rows]
    ref = T.train(RunConfig(**{**TINY, "lr": TINY["lr"] / 2}), data=data, progress=False)
    assert [r["train_loss"] for r in out.rows] == pytest.approx(
        [r["train_loss"] for r in ref.rows], rel=1e-5)


def test_without_installed_plugins_an_unknown_rule_says_to_install_the_package(plugin_pkg, monkeypatch):
    use_plugins(monkeypatch)
    with pytest.raises(ValueError, match="no plugin of the entry-point group .* install the package"):
        RunConfig(**{**TINY, "update_rule": "no_such_rule_test"})
    with pytest.raises(ValueError, match="install the package"):
        RunConfig(**{**TINY, "metrics": ("train", "no_such_metric_test")})


def test_a_plugin_that_fails_to_import_raises(plugin_pkg, monkeypatch):
    name, root = plugin_pkg
    (root / "broken.py").write_text("raise RuntimeError('broken plugin for the test')\n")
    use_plugins(monkeypatch, f"{name}.broken")
    with pytest.raises(RuntimeError, match="broken plugin for the test"):
        plugins.load_plugins()
    with pytest.raises(RuntimeError, match="broken plugin for the test"):  # not silently cached
        RunConfig(**TINY)


def test_a_thread_validating_while_another_imports_the_plugins_waits_for_them(plugin_pkg,
                                                                              monkeypatch):
    name, root = plugin_pkg
    started = threading.Event()
    monkeypatch.setattr(plugins, "_test_plugin_started", started, raising=False)
    (root / "slowplug.py").write_text(
        "import time\nfrom breakeven_utils.recorder import plugins\nplugins._test_plugin_started.set()\n"
        "time.sleep(0.5)\n" + PLUGIN_SRC)
    use_plugins(monkeypatch, f"{name}.slowplug")
    errors = []
    loader = threading.Thread(target=lambda: errors.append(plugins.load_plugins()))
    loader.start()
    assert started.wait(10)
    c = RunConfig(**{**TINY, "update_rule": "plugin_half_test"})  # waits, then finds the rule
    loader.join()
    assert c.rule_name == "plugin_half_test" and errors == [None]
