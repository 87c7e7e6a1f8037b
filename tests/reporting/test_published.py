"""reporting.published: an executed notebook turned into the copy a reader opens."""
import nbformat
import pytest

from breakeven_utils.reporting.published import fold_parameters, publish, reader_copy

PARAMS = ('profile = "cpu"        # smoke | cpu | paper\n'
          "output_root = None     # None: figures/\n"
          "overrides = {}         # profile keys")


def test_fold_parameters_writes_the_injected_values_in_place_and_keeps_comments():
    folded = fold_parameters(PARAMS, '# Parameters\nprofile = "smoke"\noverrides = {"seeds": [0,\n 1]}\n')
    assert folded.splitlines()[0] == 'profile = "smoke"        # smoke | cpu | paper'
    assert folded.splitlines()[1] == "output_root = None     # None: figures/"
    assert folded.splitlines()[2:] == ['overrides = {"seeds": [0,', ' 1]}         # profile keys']
    assert fold_parameters(PARAMS, "# Parameters\n") == PARAMS


def test_fold_parameters_refuses_a_name_the_cell_does_not_define():
    with pytest.raises(ValueError, match=r"injected \['profle'\], which the parameters cell does not define"):
        fold_parameters(PARAMS, '# Parameters\nprofle = "cpu"\n')


def executed_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"input_path": "/home/someone/x.ipynb"}
    params = nbformat.v4.new_code_cell(PARAMS, metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "paper"\n',
                                         metadata={"tags": ["injected-parameters"], "papermill": {"x": 1}})
    run = nbformat.v4.new_code_cell("nb.sweep(configs)",
                                    metadata={"execution": {"iopub.status.busy": "2026-12-04T01:00:00"}})
    run.outputs = [nbformat.v4.new_output("stream", name="stdout", text="sweep: run 1 of 2 (ab) done\n"),
                   nbformat.v4.new_output("stream", name="stderr",
                                          text="\rsweep: run 1 of 2 |█▌        | 00:03"),
                   nbformat.v4.new_output("stream", name="stderr",
                                          text="\r          \rsweep: run 1 of 2 (ab) done\n"),
                   nbformat.v4.new_output("stream", name="stdout", text="sweep: run 2 of 2 (cd) done\n"),
                   nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something real\n"),
                   nbformat.v4.new_output("display_data", data={"text/plain": "<Figure>"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), params, injected, run]
    return nb


def test_reader_copy_keeps_results_drops_papermill_and_progress_bars():
    nb = reader_copy(executed_notebook())
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code"]  # the injected cell folded
    assert nb.cells[1].source.startswith('profile = "paper"')
    assert nb.cells[1].metadata["tags"] == ["parameters"]
    assert "papermill" not in nb.metadata and all("execution" not in c.metadata for c in nb.cells)
    outs = nb.cells[2].outputs
    assert outs[0].name == "stdout"
    assert outs[0].text == "sweep: run 1 of 2 (ab) done\nsweep: run 2 of 2 (cd) done\n"
    assert outs[1].name == "stderr" and outs[1].text == "UserWarning: something real\n"  # a real one stays
    assert outs[2].output_type == "display_data" and len(outs) == 3
    assert [c.id for c in nb.cells] == ["cell-00", "cell-01", "cell-02"]


def test_publish_writes_a_valid_notebook(tmp_path):
    nbformat.write(executed_notebook(), tmp_path / "x.executed.ipynb")
    target = publish(tmp_path / "x.executed.ipynb", tmp_path / "x.ipynb")
    nb = nbformat.read(target, as_version=4)
    nbformat.validate(nb)
    assert "/home/someone" not in target.read_text()


def test_reader_copy_needs_one_parameters_cell():
    nb = executed_notebook()
    nb.cells[1].metadata["tags"] = []
    with pytest.raises(ValueError, match="expected one cell tagged 'parameters', found 0"):
        reader_copy(nb)
