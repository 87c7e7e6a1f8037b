"""core.console: widget bars interactively, text bars where notebooks run headless."""
from tqdm import std
from tqdm.auto import tqdm as auto

from breakeven_utils.core import console


def test_progress_class_follows_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("BREAKEVEN_PROGRESS", "text")
    bar = console.tqdm(total=2, disable=True)
    assert type(bar) is std.tqdm
    bar.close()
    console.write("a line")
    assert "a line" in capsys.readouterr().out
    monkeypatch.delenv("BREAKEVEN_PROGRESS")
    bar = console.tqdm(total=2, disable=True)
    assert isinstance(bar, auto)
    bar.close()
