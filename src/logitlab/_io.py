"""Atomic file writes: a temporary file in the same folder, fsync, then os.replace.

A reader (or a crash) sees either the old complete file or the new one,
never a half-written file. What the path names decides what is replaced
(:func:`_destination`), as a shell's ``>`` would: a symbolic link is written
through (its target is replaced, the link kept); a FIFO, a device or a
socket (``/dev/null``, ``/dev/stdout``, a process substitution's
``/dev/fd/63``) is written to in place, since there is no file to replace;
a file the user may not write is refused. A failed write raises :class:`WriteError`, which
names the user's path (never the hidden temporary) and leaves no temporary
behind; a temporary left by a killed process (SIGKILL, power loss) is removed
by the next write to the same path.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import tempfile
import time

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, age alone decides
    fcntl = None

__all__ = ["WriteError", "atomic_write", "check_writable", "remove_stale_temporaries"]


class WriteError(OSError):
    """Writing ``filename`` failed (missing folder, no permission, disk full...).

    ``errno`` and ``strerror`` are those of the failed call; ``filename`` is
    the path the caller asked for. The file at that path is untouched.
    """


def _temp_name_pattern(path):
    # tempfile.mkstemp(prefix=".NAME.", suffix=".tmp") adds 8 characters of this alphabet
    return re.compile(re.escape(f".{os.path.basename(path)}.") + r"[a-z0-9_]{8}\.tmp")


def _lock(fd, blocking=True):
    """An exclusive advisory lock on the open temporary: held while it is written.

    The kernel drops it when the writer dies, however it dies, so a temporary
    whose lock can be taken has no live writer.
    """
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def remove_stale_temporaries(path):
    """Remove temporaries of ``path`` left by a writer that was killed.

    Only files named as :func:`atomic_write` names its temporaries for this
    very ``path`` (``.NAME.xxxxxxxx.tmp`` in the same folder), last modified
    before this process started and locked by no live writer, are removed.
    Returns the names removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    pattern = _temp_name_pattern(path)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not pattern.fullmatch(name):
            continue
        full = os.path.join(folder, name)
        try:
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_mtime >= _process_start() \
                    or not _lock(fd, blocking=False):
                continue
            os.unlink(full)
            removed.append(name)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _process_start():
    """When this process started (seconds since the epoch), from /proc where there is one.

    The kernel counts a process's start in clock ticks after boot (10 ms);
    the uptime clock now, taken from the wall clock now, places it. Without
    /proc, the import of this module stands in (later than the start: safe).
    """
    global _START
    if _START is None:
        try:
            with open("/proc/self/stat", "rb") as fh:
                ticks = int(fh.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
            uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
            _START = time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
        except (OSError, ValueError, IndexError, AttributeError):
            _START = _IMPORTED
        _START = min(_START, _IMPORTED)
    return _START


_START = None
_IMPORTED = time.time()


def _write_error(exc, path):
    return WriteError(exc.errno, exc.strerror or str(exc), os.fspath(path))


def _destination(path):
    """``(file, special)``: the regular file a write to ``path`` replaces (``path`` itself, or
    the file its symbolic links lead to, existing or not), or ``path`` with ``special`` True
    where it names something that is not a regular file and is written in place. Raises
    :class:`WriteError` for a folder and for a file the user may not write (root may)."""
    if path.endswith(("/", os.sep)) and not os.path.isdir(path):
        raise WriteError(20, "names a folder (it ends with a separator); give a file name", path)
    if _own_descriptor(path) is not None:
        # /dev/stdout, /dev/fd/N, /proc/self/fd/N: the caller's stream, whatever it leads to
        # (a file the shell opened, maybe for appending): written in place, never replaced
        try:
            os.fstat(_own_descriptor(path))
        except OSError as exc:
            raise _write_error(exc, path) from None
        return path, True
    try:
        st = os.stat(path)  # follows links: a link to a FIFO is written in place too
    except FileNotFoundError:
        return os.path.realpath(path), False  # new, or a dangling link's target: created
    except OSError as exc:
        raise _write_error(exc, path) from None
    if stat.S_ISDIR(st.st_mode):
        raise WriteError(21, "is a folder; give a file name", path)
    if not stat.S_ISREG(st.st_mode):
        if not os.access(path, os.W_OK):
            raise WriteError(13, "permission denied", path)
        return path, True
    if not os.access(path, os.W_OK):
        raise WriteError(13, "the file is write-protected", path)
    return os.path.realpath(path), False


def _own_descriptor(path):
    """The number of this process's open file that ``path`` names (``/dev/stdout``,
    ``/dev/stderr``, ``/dev/fd/N``, ``/proc/self/fd/N``), else None."""
    absolute = os.path.abspath(path)
    named = {"/dev/stdout": 1, "/dev/stderr": 2}.get(absolute)
    if named is not None:
        return named
    match = re.fullmatch(rf"/(?:dev/fd|proc/(?:self|{os.getpid()})/fd)/(\d+)", absolute)
    return int(match.group(1)) if match else None


def check_writable(path):
    """Raise :class:`WriteError` unless a file can be written at ``path`` now.

    Checks that the folder exists and takes a new file (by creating and
    removing a temporary there), so that a long computation does not end
    with nowhere to put its result; a FIFO or a device only that it may be written.
    """
    path = os.fspath(path)
    if not path:
        raise WriteError(2, "an empty path; give a file name", path)
    target, special = _destination(path)
    if special:
        return
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise WriteError(2, f"the folder {folder} does not exist", path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _write_error(exc, path) from None
    os.close(fd)
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None, newline=None):
    """Open a temporary sibling of ``path`` for writing; replace ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched;
    an ``OSError`` of the write itself (folder missing, permission, disk
    full) is raised as :class:`WriteError` naming ``path``.
    """
    path = os.fspath(path)
    if not path:
        raise WriteError(2, "an empty path; give a file name", path)
    target, special = _destination(path)
    if special:
        try:
            fd = _own_descriptor(path)
            if fd is not None:  # /dev/stdout...: through the descriptor itself, at its offset
                # (reopened, a file the shell opened would be written over from its start)
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                with os.fdopen(os.dup(fd), mode, encoding=encoding, newline=newline) as fh:
                    yield fh
            else:
                with open(path, mode, encoding=encoding, newline=newline) as fh:
                    yield fh
        except OSError as exc:
            if isinstance(exc, WriteError) or exc.filename not in (None, path):
                raise
            raise _write_error(exc, path) from exc
        return
    user_path, path = path, target
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _write_error(exc, user_path) from None
    _lock(fd)
    # mkstemp makes the file private (0600); give it what a plain open() would: the
    # replaced file's mode, or 0666 less the umask
    try:
        try:
            permissions = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            permissions = 0o666 & ~_umask()
        os.chmod(tmp, permissions)
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError) \
                and exc.filename in (None, tmp, path, user_path):
            raise _write_error(exc, user_path) from exc
        raise
    _fsync_dir(folder)


def _umask():
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_dir(folder):
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dfd)
