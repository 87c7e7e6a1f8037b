"""papers.notebook: the parameters of a notebook checked before any compute."""

import pytest

from breakeven_utils.papers.notebook import check_parameters


def test_notebook_parameters_of_the_wrong_type_name_the_parameter():
    msg = "parameter 'jobs': expected a positive integer or None, got str 'abc'"
    with pytest.raises(ValueError, match=msg):
        check_parameters("cpu", jobs="abc")
    with pytest.raises(ValueError, match="parameter 'jobs'"):
        check_parameters("cpu", jobs=0)
    with pytest.raises(ValueError, match="parameter 'run_store': expected a path"):
        check_parameters("cpu", run_store=3)
    with pytest.raises(ValueError, match="parameter 'profile'"):
        check_parameters(None)
    check_parameters("cpu", "figs", "runs", 2)
