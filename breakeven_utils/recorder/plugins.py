"""Update rules and metrics that live outside the recorder, found by name in any process.

A paper section that adds an update rule (Nudged SGD) or a metric (the walk's
interpolation) registers it with ``rules.register_rule`` / ``metrics.register_metric``
when its ``plugins`` module is imported. The recorder never names those modules: they
are entry points of the group :data:`PLUGIN_GROUP`, declared in ``pyproject.toml``
(``[project.entry-points."breakeven_utils.plugins"]``). :func:`load_plugins` imports
them, so a rule or metric is found by name in a fresh interpreter or a sweep worker
without the caller importing its module. It runs at call time (RunConfig validation,
the loop), never at import time, so the import graph stays a downward stack.
"""
from __future__ import annotations

import functools
import importlib
import threading
from importlib.metadata import entry_points

__all__ = ["PLUGIN_GROUP", "plugin_modules", "load_plugins", "loaded_plugins"]

PLUGIN_GROUP = "breakeven_utils.plugins"

_seen: dict[str, bool] = {}  # module name -> imported
_lock = threading.RLock()  # other threads wait until the plugins are registered
_loading = False  # re-entry from a plugin being imported (same thread only)


@functools.cache
def plugin_modules() -> tuple[str, ...]:
    """The modules of the installed entry points of :data:`PLUGIN_GROUP`, by entry name.
    Read once per process: scanning the installed distributions costs milliseconds, and
    every RunConfig validation asks."""
    eps = sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name)
    return tuple(e.value.split(":")[0] for e in eps)


def loaded_plugins() -> dict[str, bool]:
    """{module: imported} of the plugin modules seen so far (a copy)."""
    return dict(_seen)


def load_plugins() -> None:
    """Import every module of :func:`plugin_modules` not imported yet.

    One that fails to import raises (its error, unchanged; the next call tries
    again). Idempotent and cheap after the first call. Thread-safe: a thread that
    calls it while another imports the plugins waits for them; a plugin that builds a
    ``RunConfig`` while it is being imported does not re-enter the loader.
    """
    global _loading
    modules = plugin_modules()
    if all(m in _seen for m in modules):
        return
    with _lock:
        if _loading:
            return
        _loading = True
        try:
            for name in modules:
                if name not in _seen:
                    importlib.import_module(name)  # raises if the module is broken
                    _seen[name] = True
        finally:
            _loading = False
