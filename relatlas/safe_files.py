"""Private folders and atomic files, safe against planted links and other users.

A run's outputs and a client's state are written where another local user might
have planted a symbolic link (``results.json.partial -> /victim``) or a folder of
their own. So every file is first written to a fresh temporary name in its folder,
created exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``, as ``tempfile.mkstemp``
does: no existing path, link or not, is ever opened for writing) and 0600 from the
start, then renamed over the target (a rename replaces a link, never its target);
a write that does not fit removes its temporary file and says, in one line, which
file needs how many bytes (``DiskFullError``).
Folders are created 0700; an existing one is used only if it is a real folder of
this user that nobody else may write to (a folder others may write to lets them
swap what is inside for links; group-writable is allowed only for the user's own
private group).
"""

from __future__ import annotations

import errno
import grp
import io
import logging
import os
import pwd
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from relatlas.section_base import ConfigError

log = logging.getLogger("relatlas")

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


class UnsafePathError(ConfigError):
    """A folder to write in that cannot be made, is a link, not a folder, someone else's, or writable by others; one line."""


def private_dir(path: Path, trusted: Path | None = None) -> Path:
    """``path`` and its missing parents, created 0700; idempotent and safe when other
    processes create the same folders at once. Every folder from ``trusted`` (an
    ancestor of ``path``; default: ``path`` alone) down to ``path`` is checked with
    ``check_private_dir``."""
    path = Path(path)
    for folder in reversed([path, *path.parents]):
        if not os.path.lexists(folder):
            try:
                os.mkdir(folder, PRIVATE_DIR)
            except FileExistsError:
                pass  # another process made it first: checked below like any existing folder
            except OSError as err:
                raise UnsafePathError(f"folder {folder} cannot be created: {err.strerror or err}") from None
    chain = [path, *path.parents]
    for folder in chain[: chain.index(Path(trusted)) + 1 if trusted is not None else 1]:
        check_private_dir(folder)
    return path


def check_private_dir(path: Path) -> None:
    """Refuse ``path`` unless it is a real folder (not a link), owned by this user, that
    no other user may write to (through its group or as anyone)."""
    try:
        info = os.lstat(path)
    except OSError as err:
        raise UnsafePathError(f"folder {path} cannot be used: {err.strerror or err}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"refusing folder {path}: it is a symbolic link; give a real folder")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(f"refusing folder {path}: it is not a folder")
    if info.st_uid != os.geteuid():
        raise UnsafePathError(f"refusing folder {path}: it belongs to user {info.st_uid}, not to this user")
    if info.st_mode & stat.S_IWOTH or (info.st_mode & stat.S_IWGRP and _group_has_others(info.st_gid)):
        mode = stat.S_IMODE(info.st_mode)
        raise UnsafePathError(f"refusing folder {path}: others may write to it (mode {mode:o}); chmod go-w it or use another")


def _group_has_others(gid: int) -> bool:
    """Whether group ``gid`` may hold users besides this one: any group but the user's
    private group (named as the user, no listed members), which a umask of 002 makes
    every folder of the user writable to."""
    try:
        group, user = grp.getgrgid(gid), pwd.getpwuid(os.geteuid())
    except KeyError:
        return True
    return not (gid == os.getegid() and group.gr_name == user.pw_name and not group.gr_mem)


class DiskFullError(OSError):
    """A file that does not fit on its disk (or in its quota), in one line that names
    the file, the bytes it needs and the bytes free; ``errno`` is ENOSPC or EDQUOT."""

    def __str__(self) -> str:
        return self.strerror


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """A binary file whose content replaces ``path`` (0600) when the block ends without
    error; on error the temporary file is removed and ``path`` is left as it was.

    The block writes to memory; the content goes to disk in one piece at its end, so
    that a full disk is told as ``DiskFullError`` with the bytes needed (torch's
    writer reports it as an unrelated ``RuntimeError``) and nothing is left behind."""
    buffer = io.BytesIO()
    yield buffer
    _replace_with(Path(path), buffer.getbuffer())


def _replace_with(path: Path, content: memoryview) -> None:
    """``content`` in a fresh exclusive temporary file, renamed over ``path``; the temporary file removed on any error."""
    temporary = None
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(err.errno, path, len(content)) from None
        raise


def _disk_full(number: int, path: Path, needed: int) -> DiskFullError:
    """The one-line error of a full disk or quota; what is free is measured once the temporary file is gone."""
    disk = os.statvfs(path.parent)
    free = disk.f_bavail * disk.f_frsize
    return DiskFullError(number, f"{os.strerror(number)} writing {path}: it needs {needed:,} bytes, {free:,} are free there")


def write_text_atomic(path: Path, text: str) -> Path:
    """``text`` (UTF-8) as the new content of ``path``, with ``atomic_write``."""
    with atomic_write(path) as file:
        file.write(text.encode())
    return Path(path)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 unless something (a link included) is already
    there; whether it was created. For files another library then fills (a SQLite store)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE))
    except FileExistsError:
        return False
    return True


def open_cached(path: Path, what: str) -> BinaryIO | None:
    """A cache file opened for reading, following no link (nor waiting on a planted FIFO): None if it
    is absent, or not a plain file (then warned in one line naming it as ``what``: its caller recomputes or refuses it)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("%s %s is not a plain file (%s); not reading it", what, path, err.strerror)
        return None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        log.warning("%s %s is not a plain file; not reading it", what, path)
        return None
    return os.fdopen(descriptor, "rb")
