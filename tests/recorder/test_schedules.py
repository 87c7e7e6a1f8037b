"""The one-cycle learning-rate schedule (Smith's 1cycle; sharpest directions Fig. 15): its
closed form at hand-computed iterations, the loop using it, run-store keys of the configs
that do not use it unchanged, and bad settings failing in the config (before training)."""
import pytest

from breakeven_utils.recorder import RunConfig, Schedule, schedules, train

TINY = dict(dataset="synthetic", n_train=256, n_val=64, n_test=64, n_measure=32, model="mlp",
            model_kwargs={"hidden": (16,)}, batch_size=32, lr=0.1, max_epochs=1,
            measure_every=4, K_L=4, metrics=("train",))

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw):
    return RunConfig(**{**TINY, **kw})


def one_cycle(**kw):
    return tiny(**{"schedule": "one_cycle", **kw})


@pytest.mark.parametrize("kw, expect", [
    # T=20, f=0.1: half cycle h=9, cycle end c=18; b=0.01, m=0.001
    (dict(one_cycle_iters=20, clr_base_lr=0.01, min_lr=0.001),
     {0: 0.01, 3: 0.04, 9: 0.1, 12: 0.07, 18: 0.01, 19: 0.0055, 20: 0.001, 500: 0.001}),
    # T=25, f=0.2: h=10, c=20; b defaults to lr/10, m to 0
    (dict(one_cycle_iters=25, one_cycle_anneal=0.2),
     {0: 0.01, 5: 0.055, 10: 0.1, 15: 0.055, 20: 0.01, 22: 0.006, 24: 0.002, 25: 0.0, 30: 0.0}),
    # f=0: up and down only, then min_lr; h=2.5 (not an iteration)
    (dict(one_cycle_iters=5, one_cycle_anneal=0.0, clr_base_lr=0.02, min_lr=0.005),
     {0: 0.02, 1: 0.02 + 0.08 * 0.4, 2: 0.02 + 0.08 * 0.8, 3: 0.1 - 0.08 * 0.2, 4: 0.1 - 0.08 * 0.6,
      5: 0.005}),
])
def test_one_cycle_closed_form(kw, expect):
    s = Schedule(one_cycle(**kw), 8)
    for t, lr in expect.items():
        assert s(t) == pytest.approx(lr, abs=1e-15), t


def test_one_cycle_is_one_clr_cycle_then_annihilation():
    """The cycle is the first triangle of the cyclic (CLR) schedule with step size h;
    the annihilation decreases monotonically to min_lr."""
    oc = Schedule(one_cycle(one_cycle_iters=40, one_cycle_anneal=0.25, clr_base_lr=0.03,
                            min_lr=1e-4), 8)
    clr = Schedule(tiny(schedule="cyclic", clr_step_size=15, clr_base_lr=0.03), 8)
    assert [oc(t) for t in range(30)] == pytest.approx([clr(t) for t in range(30)], abs=1e-15)
    tail = [oc(t) for t in range(30, 41)]
    assert all(a > b for a, b in zip(tail, tail[1:])) and tail[-1] == pytest.approx(1e-4)
    assert max(oc(t) for t in range(100)) == pytest.approx(0.1)


def test_the_loop_steps_with_the_one_cycle_rate():
    c = one_cycle(one_cycle_iters=16, one_cycle_anneal=0.25, max_epochs=2, clr_base_lr=0.02,
                  min_lr=0.001)  # h = 6: the peak lr is an iteration
    seen = []
    out = train(c, progress=False, hooks=[lambda i: seen.append(i["lr"])])
    assert out.status == "done"
    s = Schedule(c, 8)
    assert seen == [s(t) for t in range(16)]
    assert seen[0] == pytest.approx(0.02) and max(seen) == pytest.approx(0.1)


def test_keys_of_configs_without_one_cycle_are_unchanged():
    """The one-cycle fields are left out of to_dict() (so the key) at their default None:
    the pinned key of a default config (test_config.PRE_SPLIT_KEYS) and every other
    schedule's serialisation are as before."""
    assert RunConfig(max_epochs=1).key() == "f3dc85a4b2e441abf331"
    for sched, kw in [("constant", {}), ("step", {"milestones": (1,)}), ("plateau", {}),
                      ("cyclic", {"clr_step_size": 3}), ("trapezoid", {"warmup_iters": 2})]:
        d = tiny(schedule=sched, **kw).to_dict()
        assert "one_cycle_iters" not in d and "one_cycle_anneal" not in d, sched
    c = one_cycle(one_cycle_iters=16)
    d = c.to_dict()
    assert d["one_cycle_iters"] == 16 and "one_cycle_anneal" not in d
    assert RunConfig.from_dict(d) == c and RunConfig.from_dict(d).key() == c.key()
    # equal settings hash equally: an integer fraction is canonicalised to float
    assert one_cycle(one_cycle_iters=16, one_cycle_anneal=0).key() == \
        one_cycle(one_cycle_iters=16, one_cycle_anneal=0.0).key() != c.key()
    assert c.key() != one_cycle(one_cycle_iters=17).key()


@pytest.mark.parametrize("bad, match", [
    (dict(schedule="one-cycle"), "unknown schedule 'one-cycle'; valid options: .*one_cycle"),
    (dict(schedule="one_cycle"), "needs one_cycle_iters"),
    (dict(schedule="one_cycle", one_cycle_iters=0), "one_cycle_iters must be an integer >= 2"),
    (dict(schedule="one_cycle", one_cycle_iters=-10), "one_cycle_iters must be an integer >= 2"),
    (dict(schedule="one_cycle", one_cycle_iters=12.5), "one_cycle_iters must be an integer"),
    (dict(schedule="one_cycle", one_cycle_iters=True), "one_cycle_iters must be an integer"),
    (dict(schedule="one_cycle", one_cycle_iters=10, one_cycle_anneal=1.0), r"in \[0, 1\)"),
    (dict(schedule="one_cycle", one_cycle_iters=10, one_cycle_anneal=-0.1), r"in \[0, 1\)"),
    (dict(schedule="one_cycle", one_cycle_iters=10, one_cycle_anneal=0.9), "at least 2 iterations"),
    (dict(schedule="one_cycle", one_cycle_iters=10, clr_base_lr=0.0), "must be positive"),
    (dict(schedule="one_cycle", one_cycle_iters=10, clr_base_lr=-0.01), r"clr_base_lr"),
    (dict(schedule="one_cycle", one_cycle_iters=10, clr_base_lr=0.01, min_lr=0.05),
     "must not exceed the base"),
    (dict(schedule="one_cycle", one_cycle_iters=10, lr=0.0), "lr must be a positive"),
    (dict(one_cycle_iters=10), "only used with schedule='one_cycle'"),
    (dict(schedule="cyclic", one_cycle_anneal=0.1), "only used with schedule='one_cycle'"),
])
def test_bad_one_cycle_settings_fail_in_the_config(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny(**bad)


def test_one_cycle_lr_function_matches_the_schedule():
    c = one_cycle(one_cycle_iters=30, clr_base_lr=0.005, min_lr=0.0)
    s = Schedule(c, 8)
    assert all(schedules.one_cycle_lr(t, 0.1, 30, 0.1, 0.005, 0.0) == s(t) for t in range(40))
