"""Atomic file writes: a reader never sees a half-written file, and a written file gets ordinary permissions."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def new_file_mode(folder: bool = False) -> int:
    """The permissions a new file (`open()`) or folder (`mkdir()`) gets under the process's umask: 0644 and 0755
    under the usual 022."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


def write_atomically(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> None:
    """Calls `write(stream)` on a temporary file beside `path`, then renames it into place (removed on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, new_file_mode())  # mkstemp makes 0600 files
        with os.fdopen(handle, "wb" if binary else "w") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    write_atomically(path, lambda stream: stream.write(text))


def new_folder_beside(path: str | os.PathLike, label: str) -> Path:
    """A new, empty folder `.{name}.{label}-XXXXXXXX` beside `path`, with the permissions `mkdir()` would give: a
    folder is built there and then renamed into place, so no reader sees it half-built."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{label}-"))
    folder.chmod(new_file_mode(folder=True))  # mkdtemp makes 0700 folders
    return folder
