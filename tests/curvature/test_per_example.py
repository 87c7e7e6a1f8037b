"""Per-example curvature v^T H_i v (break-even paper, Eq. (1)) against dense per-example
Hessians."""
import pytest
import torch

from breakeven_utils.curvature import per_example_curvature

from .oracles import F64, dense_hessian, top5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("problem", ["mlp", "cnn"])
def test_per_example_curvature_matches_dense(problem, request):
    m, lf, x, y, H = request.getfixturevalue(problem)
    n = 8
    v = top5(H, "LA")[1][0]                 # e_H^1, as for s^2 in Eq. (1)
    got = per_example_curvature(m, lf, (x[:n], y[:n]), v)
    ref = torch.stack([v @ dense_hessian(m, lf, x[i:i + 1], y[i:i + 1]) @ v for i in range(n)])
    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert ref.std() > 1e-3 * ref.abs().mean()            # genuinely differs per example
    # the mean over all examples is v^T H v, also across batches
    allc = per_example_curvature(m, lf, (x, y), v, batch_size=10)
    assert allc.shape == (x.shape[0],)
    assert float(allc.mean()) == pytest.approx(float(v @ H @ v), rel=1e-9)


def test_bad_direction(mlp):
    m, lf, x, y, H = mlp
    with pytest.raises(ValueError):
        per_example_curvature(m, lf, (x, y), torch.ones(5, dtype=F64))
