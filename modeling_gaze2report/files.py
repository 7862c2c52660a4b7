"""Atomic file writes (a reader never sees a half-written file, and a written file gets ordinary permissions) and the
output-folder rule of the commands that replace a folder whole: they replace only a folder they marked as theirs."""

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")


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


OUTPUT_MARKER = ".gaze2report-output.json"


def write_output_folder(folder: str | os.PathLike, option: str, command: str, write: Callable[[Path], T]) -> T:
    """Writes the output folder of `command` whole and returns what `write` returns: checks `folder` before any work
    (`check_output_folder`), calls `write(staging)` on a new folder beside it, marks what it wrote
    (`mark_output_folder`) and puts it in place of `folder`, replacing an earlier run's folder (checked again, for a
    file put there meanwhile). When anything fails, `folder` stays as it was and nothing is left beside it."""
    folder = check_output_folder(folder, option, command)
    staging = new_folder_beside(folder, "partial")
    try:
        result = write(staging)
        mark_output_folder(staging, command)
        check_output_folder(folder, option, command)  # again: a file put there meanwhile is not deleted either
        if folder.exists():
            aside = new_folder_beside(folder, "old")
            folder.rename(aside / "run")
            staging.rename(folder)
            shutil.rmtree(aside)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def check_output_folder(folder: str | os.PathLike, option: str, command: str) -> Path:
    """The output folder of `command`, which replaces it whole (`write_output_folder`), checked before any work: it
    must be new, empty, or a folder `command` wrote (it carries `command`'s marker, see `mark_output_folder`) holding
    no file the marker does not list; and its parent must be writable. Anything else is refused, so nothing `command`
    did not write is deleted. `option` names the folder in the errors (`--output`)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {folder} is a file; {command} writes a folder there")
    if folder.is_dir() and any(folder.iterdir()):
        written = marked_files(folder, option, command)
        foreign = sorted(name for name in folder_files(folder) if name not in written)
        if foreign:
            raise ValueError(
                f"{option} {folder} holds files that {command} did not write ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); {command} replaces its output folder whole, so move them or "
                "choose another folder"
            )
    parent = folder.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {folder}: its folder {parent} is not writable")
    return folder


def mark_output_folder(folder: str | os.PathLike, command: str) -> None:
    """Writes `command`'s marker into `folder`, listing every file the folder holds now (what `command` wrote), so
    that a later run of `command` may replace the folder and no other command takes it for its own."""
    folder = Path(folder)
    marker = {"written_by": command, "files": sorted(folder_files(folder))}
    write_text_atomically(folder / OUTPUT_MARKER, json.dumps(marker, indent=2) + "\n")


def marked_files(folder: Path, option: str, command: str) -> set[str]:
    """The files (relative POSIX paths) that `command`'s marker in `folder` lists; a folder without that marker is
    refused."""
    path = folder / OUTPUT_MARKER
    if not path.is_file():
        raise ValueError(
            f"{option} {folder} is not empty and holds no earlier {command} run (no {OUTPUT_MARKER}); {command} "
            "replaces its output folder whole, so choose a new or empty folder"
        )
    try:
        marker = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a valid output marker ({error}); choose a new or empty {option}") from error
    if not isinstance(marker, dict) or marker.get("written_by") != command or not isinstance(marker.get("files"), list):
        raise ValueError(f"{path} does not mark an earlier {command} run; choose a new or empty {option}")
    return {*marker["files"], OUTPUT_MARKER}


def folder_files(folder: Path) -> list[str]:
    """Every file and link under `folder` (relative POSIX paths), not folders."""
    return [path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_symlink() or not path.is_dir()]
