"""Module-scoped tiny problems with their dense float64 Hessians."""
import pytest

from .oracles import cnn_problem, dense_hessian, mlp_problem


@pytest.fixture(scope="module")
def mlp():
    m, lf, x, y = mlp_problem()
    return m, lf, x, y, dense_hessian(m, lf, x, y)


@pytest.fixture(scope="module")
def cnn():
    m, lf, x, y = cnn_problem()
    return m, lf, x, y, dense_hessian(m, lf, x, y)
