"""The sharpest-directions paper: every run of notebook 5, grouped by the figure or
table it serves (:func:`experiments`), and :func:`run_configs` for the cost plan."""
from __future__ import annotations

from breakeven_utils.papers.sharpest_nsgd.rules import RULE_NAMES, check_rule_kwargs
from breakeven_utils.papers.sharpest_nsgd.settings import settings
from breakeven_utils.recorder.config import RunConfig

__all__ = ["families", "skipped", "trajectory_config", "probe_config", "variant_configs", "table_configs",
           "experiments", "SCHEDULE_KINDS", "schedule_configs", "run_configs"]


def _base(s: dict, fam: dict, **fields):
    """A RunConfig from the shared data keys, a model family dict and the fields."""
    kw = dict(dataset=s["dataset"], n_train=s["n_train"], n_val=s["n_val"], n_test=s["n_test"],
              n_measure=s["n_measure"], data_seed=0, normalize="standard",
              augment=bool(s.get("augment", False)), model=fam["model"],
              model_kwargs=dict(fam.get("model_kwargs", {})),
              weight_decay=float(fam.get("weight_decay", 0.0)),
              weight_decay_on=fam.get("weight_decay_on", "all"), seed=int(s["seeds"][0]),
              hessian_n=s["hessian_n"], hessian_tol=s["hessian_tol"], hessian_which="LM",
              hessian_bn_mode="eval", measure_every_epochs=1)
    kw.update(fields)
    return RunConfig(**kw)


def families(s: dict) -> dict:
    """{'simplecnn': family, 'resnet32': family} of the models this profile runs
    (a family with a ``skip`` reason is left out, see :func:`skipped`)."""
    return {k: dict(v) for k, v in s["models"].items() if not v.get("skip")}


def skipped(s: dict) -> dict:
    """{what: reason} for the experiments this profile leaves out."""
    out = {k: v["skip"] for k, v in s["models"].items() if v.get("skip")}
    out.update(s.get("unavailable", {}))
    return out


def trajectory_config(s, fam, *, lr, batch_size, momentum=0.0, schedule="constant",
                      max_epochs=None, **extra):
    """Fig. 2/3/7/15/16: top-k eigenvalues (LM) along SGD, accuracies."""
    t = s["trajectory"]
    max_epochs = max_epochs if max_epochs is not None else fam.get("max_epochs", t["max_epochs"])
    return _base(s, fam, lr=float(lr), batch_size=int(batch_size), momentum=float(momentum),
                 schedule=schedule, max_epochs=int(max_epochs),
                 measure_every=int(t["measure_every"]), measure_dense_until=t["measure_dense_until"],
                 metrics=("train", "test", "hessian_top"), hessian_k=int(fam.get("top_k", s["top_k"])),
                 hessian_tol=float(t.get("hessian_tol", s["hessian_tol"])), **extra)


def probe_config(s, fam, lr):
    """Fig. 4, 8-11: loss along e1/e3/e5, k_min and the alpha experiment at every measurement."""
    p = s["probe"]
    return _base(s, fam, lr=float(lr), batch_size=int(p["batch_size"]), max_epochs=int(p["max_epochs"]),
                 measure_every=int(p["measure_every"]), measure_dense_until=None,
                 metrics=("train", "val", "hessian_top", "sharpest_probe"),
                 hessian_k=int(p.get("hessian_k", 5)))


def variant_configs(s, parent) -> dict:
    """Fig. 5: the variants restarted from ``parent`` at the end of epoch ``restart_epoch``,
    e1 recomputed before every step (warm start): {label: RunConfig}."""
    v = s["variants"]
    bpe = parent.n_train // parent.batch_size
    start = {"config": parent.to_dict(), "iteration": int(v["restart_epoch"]) * bpe}
    common = dict(k=1, refresh="iteration", hessian_n=int(v["hessian_n"]), tol=float(v["tol"]))
    rules = {"SGD": ("nsgd", {"gamma": 1.0}), "SGD top": ("sgd_top", {}),
             "SGD constant top": ("sgd_constant_top", {}), "SGD no top": ("sgd_no_top", {})}
    for g in v["gammas"]:
        rules[f"gamma={g:g} along e1"] = ("nsgd", {"gamma": float(g)})
    out = {}
    for label, (rule, kw) in rules.items():
        out[label] = parent.replace(
            update_rule=rule, rule_kwargs={**common, **kw}, max_epochs=None, max_iters=int(v["iters"]),
            measure_every=int(v["measure_every"]), measure_dense_until=None, measure_every_epochs=0,
            metrics=("train",), init_from=start)
    return out


def table_configs(s, fam_name, fam, momentum=0.0) -> dict:
    """Table 1 (momentum 0) / Table 3 (momentum 0.9), Fig. 6, 13, 14: NSGD at eta with
    gamma in ``gammas`` and the SGD baselines (NSGD with gamma = 1, bit for bit SGD, so
    that they log the same top-K eigenvalues); eta / 10 on a validation plateau.
    {row label: RunConfig}."""
    t = s["table"]
    gammas = t["gammas"] if momentum == 0 else t["momentum_gammas"]
    tf = dict(fam, **t.get(fam_name, {}))

    def cfg(lr, gamma):
        return _base(s, tf, lr=float(lr), batch_size=int(t["batch_size"]), momentum=float(momentum),
                     schedule="plateau", plateau_patience=int(t["patience"]), plateau_factor=0.1,
                     max_epochs=int(t["max_epochs"]), measure_every=0, measure_every_epochs=1,
                     metrics=("train", "val", "test", "hessian_top", "dist_init", "rho_W"),
                     hessian_k=int(t["k"]), train_eval_on=t.get("train_eval_on", "train"),
                     update_rule="nsgd",
                     rule_kwargs={"gamma": float(gamma), "k": int(t["k"]), "refresh": "epoch"})
    out = {f"nsgd {g:g}": cfg(t["lr"], g) for g in gammas}
    if momentum == 0:
        out.update({f"sgd {lr:g}": cfg(lr, 1.0) for lr in t["sgd_lrs"]})
    return out


def experiments(s: dict) -> dict:
    """Every run of the notebook, grouped: {group: {label: RunConfig}}.

    groups: ``fig3_<model>_eta`` / ``fig3_<model>_S`` (Fig. 2, 3; families without
    ``fig3: False``), ``probe_<model>`` (Fig. 4, 8-12; families with ``probe_lrs``),
    ``fig7_resnet32_nol2``, ``variants`` (Fig. 5), ``table1_<model>``, ``table3_<model>``,
    ``schedules`` / ``momentum`` (SimpleCNN) and ``schedules_<model>`` /
    ``momentum_<model>`` (other models, e.g. VGG-11 at paper)."""
    out = {}
    t = s["trajectory"]
    fams = families(s)
    for name, fam in fams.items():
        if name == "resnet32_nol2":
            continue
        if fam.get("fig3", True):
            out[f"fig3_{name}_eta"] = {lr: trajectory_config(s, fam, lr=lr, batch_size=t["batch_size"])
                                       for lr in fam.get("fig3_lrs", t["fig3_lrs"])}
            out[f"fig3_{name}_S"] = {S: trajectory_config(s, fam, lr=t["lr"], batch_size=S)
                                     for S in fam.get("fig3_batch_sizes", t["fig3_batch_sizes"])}
        if fam["probe_lrs"]:
            out[f"probe_{name}"] = {lr: probe_config(s, fam, lr) for lr in fam["probe_lrs"]}
    if "resnet32_nol2" in fams:  # Fig. 7
        out["fig7_resnet32_nol2"] = {t["lr"]: trajectory_config(s, fams["resnet32_nol2"], lr=t["lr"],
                                                                batch_size=t["batch_size"])}
    parent = probe_config(s, fams["simplecnn"], s["variants"]["parent_lr"])
    out["variants"] = variant_configs(s, parent)
    for name, fam in fams.items():
        if name in s["table"].get("models", ()):
            out[f"table1_{name}"] = table_configs(s, name, fam)
            out[f"table3_{name}"] = table_configs(s, name, fam, momentum=s["table"]["momentum"])
    for block in ("schedules", "momentum"):
        bad = [n for n in s[block].get("models", ["simplecnn"]) if n not in fams]
        if bad:
            raise ValueError(f"{block}: models {bad} are not run at this profile (skipped or unknown); "
                             f"run: {', '.join(fams)}")
    for name in s["schedules"].get("models", ["simplecnn"]):
        out["schedules" + _suffix(name)] = schedule_configs(s, name, fams[name])
    for name in s["momentum"].get("models", ["simplecnn"]):
        m = {**s["momentum"], **s["momentum"].get(name, {})}
        out["momentum" + _suffix(name)] = {
            b: trajectory_config(s, fams[name], lr=m["lr"], batch_size=t["batch_size"], momentum=b,
                                 max_epochs=s["schedules"]["max_epochs"]) for b in m["betas"]}
    return out


def _suffix(name: str) -> str:
    return "" if name == "simplecnn" else f"_{name}"


SCHEDULE_KINDS = ("constant", "step", "one cycle")


def schedule_configs(s, name, fam) -> dict:
    """Fig. 15 (App. D): constant, step-wise decaying (eta / 10 at each milestone epoch) and
    one-cycle eta ({kind: RunConfig}). One cycle: Smith's 1cycle (``rules.Schedule``,
    ``one_cycle``) over the whole run, eta / 10 -> eta -> eta / 10 linearly over the first
    90% of the iterations, then annihilated linearly to eta / 1000."""
    sc = {**s["schedules"], **s["schedules"].get(name, {})}
    bs = s["trajectory"]["batch_size"]
    common = dict(lr=sc["lr"], batch_size=bs, max_epochs=sc["max_epochs"])
    kinds = sc.get("kinds", list(SCHEDULE_KINDS))
    bad = set(kinds) - set(SCHEDULE_KINDS)
    if bad:
        raise ValueError(f"unknown schedule kinds {sorted(bad)}; valid: {', '.join(SCHEDULE_KINDS)}")
    extra = {"constant": {}, "step": dict(schedule="step", milestones=tuple(sc["milestones"]), gamma=0.1),
             "one cycle": dict(schedule="one_cycle", one_cycle_iters=sc["max_epochs"] * (s["n_train"] // bs),
                               clr_base_lr=sc["lr"] / 10, min_lr=sc["lr"] / 1000)}
    return {k: trajectory_config(s, fam, **common, **extra[k]) for k in kinds}


def run_configs(profile: str, **overrides) -> list:
    """Every RunConfig notebook 5 launches at ``profile`` (distinct, in launch order),
    built and validated (rule settings included) without training."""
    s = settings(profile, **overrides)
    seen = {}
    for group in experiments(s).values():
        for c in group.values():
            if c.rule_name in RULE_NAMES:
                check_rule_kwargs(c.rule_name, c)
            seen.setdefault(c.key(), c)
    return list(seen.values())
