"""Atomic file writing: write to a temporary file, then ``os.replace`` it.

A reader (or a crashed run) therefore only ever sees the old or the new
complete file, never a truncated one. The temporary file lives in the target's
folder so that ``os.replace`` stays on one file system (atomic on POSIX and
Windows).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "atomic_write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(target: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a fresh temporary file, then move it to ``target``.

    Parameters
    ----------
    target : str or os.PathLike
        Final path; its parent folder is created if needed.
    write : callable
        Receives the temporary file's path (str) and must write the complete
        content there.

    Returns
    -------
    pathlib.Path
        ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use normal permissions
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``target``."""
    return atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
