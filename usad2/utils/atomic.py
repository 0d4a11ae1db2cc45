"""Atomic file and directory writes: readers see either the old complete output or the new one.

Everything a stage writes goes to a temporary sibling first and is renamed into place, so a
crash, kill -9 or full disk never leaves a half-written file under the final name.

Permissions: `tempfile.mkstemp` / `mkdtemp` create 0600 / 0700 whatever the umask, which would
make every export or data dir private to the user (or container UID) that wrote it. The
temporary file and directory are therefore given the mode a plain `open()` / `os.makedirs()`
would give: 0666 / 0777 minus the process umask (0644 / 0755 under the usual umask 022).
"""
import contextlib
import os
import shutil
import tempfile


def current_umask():
    """The process umask, read without changing it where Linux exposes it (/proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path, mode="w", encoding="utf-8"):
    """Open a temporary file next to `path`; on success fsync and rename it onto `path`.

    On any exception the temporary file is removed and `path` is left untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 ignores the umask
        binary = "b" in mode
        with os.fdopen(fd, mode, **({} if binary else {"encoding": encoding})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(directory)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = path  # a failed write (disk full) names the output it was for
        raise


def atomic_write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path, data):
    """Write `data` to `path` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


class _WriteErrorKeeper:
    """File wrapper that remembers the OSError of a failed write.

    torch.save's zip writer turns a failed write (disk full) into an obscure RuntimeError
    ("unexpected pos ..."); keeping the original lets atomic_torch_save re-raise it.
    """

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def atomic_torch_save(obj, path):
    """`torch.save` to `path` atomically (checkpoints are never half-written).

    A write that fails (disk full, file size limit) raises its OSError, not torch's RuntimeError.
    """
    import torch

    with atomic_write(path, "wb") as f:
        writer = _WriteErrorKeeper(f)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary directory beside `path`; on success it replaces `path` whole.

    An existing `path` is moved aside and deleted only after the new one is in place.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's 0700 ignores the umask
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = path  # a failed write (disk full) names the output it was for
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
