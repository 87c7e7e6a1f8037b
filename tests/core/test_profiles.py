import pytest

from breakeven_utils.core.profiles import PROFILES, get_profile


def test_profiles_exist_with_shared_keys():
    assert set(PROFILES) == {"smoke", "cpu", "paper"}
    keys = {k for k, v in PROFILES["paper"].items() if not isinstance(v, dict)}
    for name in PROFILES:
        p = get_profile(name)
        assert keys <= set(p) and p["profile"] == name


def test_paper_profile_matches_the_papers():
    p = get_profile("paper")
    assert (p["n_train"], p["n_val"], p["n_measure"]) == (45_000, 5_000, 2_250)
    assert (p["K_L"], p["K_M"]) == (25, 128) and len(p["seeds"]) == 5


def test_overrides_and_errors():
    assert get_profile("cpu", n_train=123)["n_train"] == 123
    assert get_profile("cpu")["n_train"] != 123  # no mutation of the stored profile
    with pytest.raises(ValueError, match="valid"):
        get_profile("gpu")
    with pytest.raises(ValueError, match="n_trian"):
        get_profile("cpu", n_trian=5)
    with pytest.raises(ValueError, match="section"):
        get_profile("cpu", section="nope")


@pytest.mark.parametrize("overrides, match", [
    (dict(seeds=3), "override 'seeds': expected a list like the profile's \\[0\\], got int 3"),
    (dict(seeds=[]), "override 'seeds': must not be empty"),
    (dict(seeds=["a"]), "override 'seeds': elements must be number"),
    (dict(n_train=0), "override 'n_train': must be positive"),
    (dict(n_train=100.5), "override 'n_train': expected an integer"),
    (dict(lambda_H="yes"), "override 'lambda_H': expected a bool"),
])
def test_overrides_of_the_wrong_shape_name_their_key(overrides, match):
    """Issue 24: a mistaken override fails before compute, naming the key and what was
    expected, instead of an IndexError or TypeError deep in a sweep."""
    with pytest.raises(ValueError, match=match):
        get_profile("cpu", "batchnorm", **overrides)
    ok = get_profile("cpu", "batchnorm", seeds=[0, 1, 2], n_train=3_200, measure_early=None)
    assert ok["seeds"] == [0, 1, 2] and ok["measure_early"] is None

