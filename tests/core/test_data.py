import numpy as np
import pytest
import torch

from breakeven_utils.core import data as D
from breakeven_utils.core.data import BatchIterator, DataNotFoundError, Split, augment_batch, load_data


def test_synthetic_splits_shapes_and_determinism():
    a = load_data("synthetic", n_train=500, n_val=100, n_test=200, n_measure=50, seed=3)
    b = load_data("synthetic", n_train=500, n_val=100, n_test=200, n_measure=50, seed=3)
    assert a.train.x.shape == (500, 3, 8, 8) and a.train.x.dtype == torch.float32
    assert a.train.y.dtype == torch.int64 and len(a.val) == 100 and len(a.test) == 200
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    # measurement set: the first n_measure training examples
    assert torch.equal(a.measure.x, a.train.x[:50])
    c = load_data("synthetic", n_train=500, n_val=100, seed=4)
    assert not torch.equal(a.train.x, c.train.x)


def test_subsets_are_nested_and_disjoint_from_validation():
    small = load_data("synthetic", n_train=300, n_val=50, normalize="unit")
    big = load_data("synthetic", n_train=1000, n_val=200, normalize="unit")
    assert torch.equal(small.train.x, big.train.x[:300])
    tr = {tuple(r) for r in big.train.x.flatten(1)[:, :12].tolist()}
    va = {tuple(r) for r in big.val.x.flatten(1)[:, :12].tolist()}
    assert not tr & va
    assert 0.0 <= big.train.x.min() and big.train.x.max() <= 1.0


def test_standard_normalisation_uses_channel_statistics():
    d = load_data("synthetic", normalize="standard")
    u = load_data("synthetic", normalize="unit")
    mean = torch.tensor(D.DATASETS["synthetic"].mean).view(1, -1, 1, 1)
    std = torch.tensor(D.DATASETS["synthetic"].std).view(1, -1, 1, 1)
    torch.testing.assert_close(d.train.x, (u.train.x - mean) / std)


@pytest.mark.parametrize("kw", [dict(n_train=0), dict(n_train=10**7), dict(n_val=-1),
                                dict(n_measure=10**6), dict(n_train=2.5), dict(normalize="zca")])
def test_impossible_sizes_fail_before_any_io(kw, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("I/O happened before validation")

    monkeypatch.setattr(D, "_load_raw", boom)
    with pytest.raises(ValueError):
        load_data("cifar10", **kw)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="cifar10.*fashion_mnist"):
        load_data("cifar11")


def test_missing_data_names_places_searched(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_data("cifar10", root=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path) in msg and "cifar10-jpeg" in msg and "BREAKEVEN_DATA" in msg


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("BREAKEVEN_DATA", str(tmp_path / "env"))
    assert D.data_root() == tmp_path / "env"
    assert D.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("BREAKEVEN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert D.data_root() == tmp_path / "cache" / "breakeven_utils"


def _fake_arrays(n_train=50_000, n_test=10):
    rng = np.random.default_rng(0)
    return (rng.integers(0, 255, (n_train, 3, 2, 2), dtype=np.uint8), rng.integers(0, 10, n_train),
            rng.integers(0, 255, (n_test, 3, 2, 2), dtype=np.uint8), rng.integers(0, 10, n_test))


def test_cache_roundtrip_and_corruption_detected(tmp_path):
    path = D._cache_path(tmp_path, "cifar10", "jpeg")
    arrays = _fake_arrays()
    D._write_cache(path, arrays)
    d = load_data("cifar10", root=tmp_path, n_train=100, n_val=10, download=False)
    assert d.source == "jpeg" and d.label == "CIFAR-10, JPEG copy" and d.train.x.shape == (100, 3, 2, 2)
    # flip one byte inside the stored images: the checksum catches it
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(RuntimeError, match="corrupt|checksum"):
        load_data("cifar10", root=tmp_path, n_train=100, download=False)
    path.write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="corrupt"):
        load_data("cifar10", root=tmp_path, n_train=100, download=False)


def test_jpeg_folder_reader(tmp_path):
    from torchvision.io import encode_jpeg

    g = torch.Generator().manual_seed(0)
    images = {}
    for c in D.CIFAR10_CLASSES[::-1]:  # created in reverse: order must come from the standard list
        (tmp_path / c).mkdir()
        img = (torch.rand(3, 32, 32, generator=g) * 40 + 100).to(torch.uint8)  # smooth: JPEG keeps it
        (tmp_path / c / "0000.jpg").write_bytes(encode_jpeg(img, quality=95).numpy().tobytes())
        images[c] = img
    x, y = D._read_jpeg_folder(tmp_path)
    assert x.shape == (10, 3, 32, 32) and x.dtype == np.uint8
    assert y.tolist() == list(range(10))
    for label, c in enumerate(D.CIFAR10_CLASSES):
        err = np.abs(x[label].astype(int) - images[c].numpy().astype(int)).mean()
        assert err < 8, (c, err)


def test_real_cifar10_jpeg_copy(cifar_root):
    d = load_data("cifar10", root=cifar_root, n_train=2000, n_val=500, n_test=500)
    assert d.num_classes == 10 and d.train.x.shape == (2000, 3, 32, 32)
    assert d.measure.x.shape[0] == 100  # 5% of the training subset
    assert set(d.train.y.unique().tolist()) == set(range(10))
    # standardised: per-channel means near 0 and stds near 1
    assert d.train.x.mean((0, 2, 3)).abs().max() < 0.1
    assert (d.train.x.std((0, 2, 3)) - 1).abs().max() < 0.1
    if d.source == "jpeg":
        assert "JPEG copy" in d.label


def _explicit_crop_flip(xp, oy, ox, flip, h, w):
    out = xp[:, oy:oy + h, ox:ox + w]
    return out.flip(2) if flip else out


def test_augment_is_a_padded_crop_and_flip():
    x = torch.randn(6, 3, 8, 8)
    g = torch.Generator().manual_seed(1)
    out = augment_batch(x, g)
    assert out.shape == x.shape
    xp = torch.nn.functional.pad(x, (4,) * 4)
    for i in range(6):
        matches = [(oy, ox, f) for oy in range(9) for ox in range(9) for f in (False, True)
                   if torch.equal(out[i], _explicit_crop_flip(xp[i], oy, ox, f, 8, 8))]
        assert matches, f"image {i} is no crop/flip of its padded input"
    # the draws really vary
    assert not torch.equal(out, augment_batch(x, torch.Generator().manual_seed(2)))


def test_batch_iterator_deterministic_and_complete():
    split = Split(torch.arange(103).float().view(-1, 1), torch.arange(103))
    it = BatchIterator(split, 10, seed=5, drop_last=False)
    assert len(it) == 11
    e0 = [y for _, y in it.epoch(0)]
    assert sorted(torch.cat(e0).tolist()) == list(range(103))
    assert all(torch.equal(a, b) for a, b in zip(e0, [y for _, y in it.epoch(0)]))
    e1 = torch.cat([y for _, y in it.epoch(1)])
    assert not torch.equal(torch.cat(e0), e1)
    assert len(BatchIterator(split, 10)) == 10
    with pytest.raises(ValueError):
        BatchIterator(split, 104)
    with pytest.raises(ValueError):
        BatchIterator(split, 0)
