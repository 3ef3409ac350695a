"""Output options of every command, checked before any work starts.

attnlab never replaces a file it did not create in the same command unless told ``--force``,
and an output that cannot be written is an error before anything is measured or loaded. Each
command calls :func:`new_file` (a file option such as ``predict --html``) or :func:`out_dir`
(a folder option such as ``report --out``) while it checks its arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from attnlab.errors import ConfigError

__all__ = ["new_file", "out_dir"]


def _shown(p: Path) -> str:
    """A path as one line of text (a name with a line break or control character is quoted)."""
    return str(p) if str(p).isprintable() else repr(str(p))


def _writable_parent(p: Path, option: str) -> None:
    """The nearest existing ancestor of ``p`` must be a writable folder (``p``'s parents are made)."""
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{option} {_shown(p)}: {_shown(parent)} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{option} {_shown(p)}: folder {_shown(parent)} is not writable")
            return


def new_file(path: str | os.PathLike, option: str, force: bool = False) -> Path:
    """``path`` checked as a file this command will write.

    Raises:
        ConfigError: it is a folder, it exists (without ``force``), or it cannot be written.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{option} {_shown(p)}: is a folder; give a file name")
    if p.exists() and not force:
        raise ConfigError(f"{option} {_shown(p)}: file exists; attnlab does not replace files it did not create "
                          f"(pass --force to replace it)")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"{option} {_shown(p)}: file is not writable")
    _writable_parent(p, option)
    return p


def out_dir(path: str | os.PathLike, option: str, names: Iterable[str], force: bool = False) -> Path:
    """``path`` checked as a folder this command will write ``names`` into (made if missing).

    Raises:
        ConfigError: it is a file, one of ``names`` exists there (without ``force``), or the
            folder cannot be written.
    """
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {_shown(p)}: is a file, not a folder")
    if p.is_dir():
        clash = sorted(n for n in names if (p / n).exists())
        if clash and not force:
            shown = ", ".join(clash[:5]) + (f" and {len(clash) - 5} more" if len(clash) > 5 else "")
            raise ConfigError(f"{option} {_shown(p)}: would replace {shown}; attnlab does not replace files it did not "
                              f"create (pass --force, or choose another folder)")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(f"{option} {_shown(p)}: folder is not writable")
    else:
        _writable_parent(p, option)
    return p
