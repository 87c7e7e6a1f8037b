"""The one atomic write: every file this package writes (run store, data cache,
figures, tables, ledger, manifest) goes through :func:`atomic_write`.

A file is written under a temporary name in its own folder, flushed to disk and
renamed over the target (``os.replace``), so a reader never sees half of it and
an interrupted write leaves the old file (or none) behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "read_json", "sha256_file", "json_default"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)``, fsync the result and ``os.replace`` it onto ``path``.

    The temporary file lies beside ``path`` (same file system), keeps its suffix (so
    writers that pick a format by suffix, e.g. ``savefig``, still work) and is removed
    if ``write`` raises. The written file is world-readable (0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` atomically; returns its sha256 (hex), what the run store checks."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return hashlib.sha256(data).hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def json_default(o):
    """JSON for numpy scalars and paths (``json.dumps(default=...)``)."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 1) -> str:
    """``obj`` as sorted-key JSON plus a newline, written atomically; returns its sha256."""
    text = json.dumps(obj, indent=indent, sort_keys=True, default=json_default) + "\n"
    return atomic_write_bytes(path, text.encode())


def read_json(path: str | os.PathLike, error: type[Exception] = ValueError, hint: str = "") -> Any:
    """The JSON in ``path``, or None when the file does not exist; a file that is not
    valid JSON raises ``error`` naming it (and ``hint``, what to do about it)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is not valid JSON ({e})" + (f"; {hint}" if hint else "")) from None


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
