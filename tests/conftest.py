import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def cifar_root():
    """The configured data root holding the real CIFAR-10 (original or JPEG copy).

    Outside CI a missing copy skips the test; in CI (CI=true, where .ci/run
    unpacks the offline copy) a missing copy is a failure, not a skip.
    """
    from breakeven_utils.core.data import data_root

    root = data_root()
    if (root / "cifar10-jpeg" / "train").is_dir() or (root / "cifar-10-batches-py").is_dir():
        return root
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide CIFAR-10 under BREAKEVEN_DATA (looked in {root})")
    pytest.skip("no CIFAR-10 under the data root; set BREAKEVEN_DATA")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-model tests: on a shared 2-core machine
    two threads are slower for them (oversubscription)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _restore_environment():
    """Every test leaves os.environ as it found it. scripts/reproduce.py puts its
    settings (BREAKEVEN_EXECUTOR, _DEVICE, _THREADS, ...) into the environment the
    notebooks inherit; a test calling it must not hand them to later tests, nor to
    the notebook kernels nbval starts after the unit tests."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def test_device():
    """The device ``BREAKEVEN_TEST_DEVICE`` names (default cpu; ``make device-check`` sets cuda)
    as a ``torch.device``; an unusable name fails the test."""
    from breakeven_utils.core.device import resolve_device

    name = os.environ.get("BREAKEVEN_TEST_DEVICE", "cpu")
    try:
        return torch.device(resolve_device(name))
    except (ValueError, RuntimeError) as e:
        pytest.fail(f"BREAKEVEN_TEST_DEVICE={name!r} is not usable here: {e}")
