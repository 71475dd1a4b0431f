"""Atomic writes: a file or directory appears whole at its final path, or not at all.

- Outputs are checked before any work starts (:func:`check_output`): the place must be writable,
  and an existing output is replaced only with ``overwrite`` and only when rqgmm wrote it (a
  tokenizer or run directory with its manifest, a file of the requested kind) — never a folder
  of someone else's files, never through a symbolic link.
- A new output is written to a temporary sibling (named after this process, so a later run can
  tell a dead writer's leftovers from a live one's and clean them), its files and directory are
  fsynced, and it replaces the old one in a single step: ``rename`` for files, an atomic
  exchange (``renameat2(RENAME_EXCHANGE)``) for directories. Where the exchange is unavailable
  the old directory is first moved to a backup name that the next write to the same path
  restores if a crash came between the two renames.
- Files and directories follow the umask, like other tools (tempfile's private 0700/0600 modes
  are undone).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from rqgmm.errors import InvalidInputError, OutputExistsError

_MAGIC = {".npy": b"\x93NUMPY", ".parquet": b"PAR1"}


def check_output(path: str | Path, overwrite: bool, kind: str = "file", *, inputs=()) -> None:
    """Check, before any work, that ``path`` can receive an output of ``kind`` and is none of the
    command's ``inputs`` (the same file or directory after resolving links: always refused, even
    with ``overwrite``). Kinds:

    "file" (a file; an existing one must be a regular file, of the same format for .npy and
    .parquet), "artifact" (a tokenizer / model directory with an rqgmm manifest), "run" (a CTR run
    directory), "parquet-directory" (a directory of Parquet files only), "report" (a report
    directory written by rqgmm). Raises :class:`OutputExistsError` or :class:`InvalidInputError`
    naming the problem."""
    path = Path(path)
    for source in inputs:
        if source is not None and _same_place(path, Path(source)):
            raise InvalidInputError(f"{path}: is also an input of this command ({source}); writing there would"
                                    " destroy the input: write the output elsewhere")
    if path.is_symlink():
        raise InvalidInputError(f"{path}: is a symbolic link; rqgmm does not write through links (give the real path)")
    if path.exists():
        if not overwrite:
            raise OutputExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
        _check_ours(path, kind)
        return
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link on the way
            raise InvalidInputError(f"{path}: {ancestor} is a broken symbolic link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InvalidInputError(f"{path}: cannot create it, {ancestor} is a file, not a directory")
    try:  # the only reliable test of writability (permissions, read-only or pseudo file systems)
        probe = tempfile.mkdtemp(prefix=".rqgmm-probe-", dir=ancestor)
        os.rmdir(probe)
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot write in {ancestor} ({exc.strerror or exc})") from None


def _same_place(a: Path, b: Path) -> bool:
    """Whether two paths name the same file or directory (links resolved; also for an SQLite
    database's -wal / -shm companions, which belong to it)."""
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    a, b = a.resolve(), b.resolve()
    return a == b or any(a == b.with_name(b.name + tail) for tail in ("-wal", "-shm", "-journal"))


def _check_ours(path: Path, kind: str) -> None:
    if kind == "file":
        if not path.is_file():
            raise InvalidInputError(f"{path}: exists and is not a file; rqgmm only replaces a file it would write there")
        magic = _MAGIC.get(path.suffix.lower())
        if magic is not None:
            with open(path, "rb") as handle:
                if handle.read(len(magic)) != magic:
                    raise InvalidInputError(f"{path}: exists but is not a {path.suffix} file; not replacing it")
        return
    if not path.is_dir():
        raise InvalidInputError(f"{path}: exists and is not a directory; not replacing it")
    entries = [entry.name for entry in path.iterdir()]
    if kind == "artifact":
        ours = _is_artifact(path)
    elif kind == "run":
        ours = (path / "config.json").is_file() and _is_artifact(path / "model")
    elif kind == "parquet-directory":
        ours = all(name.endswith(".parquet") or name.startswith((".", "_")) for name in entries)
    elif kind == "report":
        ours = (path / "report.json").is_file()
    else:
        raise ValueError(f"unknown output kind {kind!r}")
    if not ours:
        shown = ", ".join(sorted(entries)[:5]) + (" ..." if len(entries) > 5 else "")
        raise InvalidInputError(f"{path}: exists and does not hold a {kind.replace('-', ' ')} written by rqgmm"
                                f" (it holds: {shown or 'nothing'}); not replacing it — choose another path or"
                                " remove it yourself")


def _is_artifact(path: Path) -> bool:
    try:
        return json.loads((path / "manifest.json").read_text()).get("format") == "rqgmm-artifact"
    except (OSError, ValueError, AttributeError):
        return False


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or file system without it
        return False
    raise OSError(code, os.strerror(code), str(second))


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_directory(Path(directory))


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _follow_umask(root: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for directory, subdirectories, files in os.walk(root):
        os.chmod(directory, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o666 & ~umask)


WRITER_MARK = ".rqgmm-writer"  # inside every temporary and backup atomic_path makes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(path: Path) -> None:
    """Restore a directory left at its backup name by a crash between two renames, and remove
    temporaries of writers that are no longer running."""
    parent = path.parent
    if not parent.is_dir():
        return
    prefix = f".{path.name}."
    for entry in parent.iterdir():
        name = entry.name
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        pid_text = rest.split(".", 1)[0].removeprefix("old-")
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        if not (entry.is_dir() and not entry.is_symlink() and (entry / WRITER_MARK).is_file()):
            continue  # not provably ours (a user's own file of that name): never touched
        if rest.startswith("old-") and not path.exists():
            (entry / WRITER_MARK).unlink()
            os.replace(entry, path)  # the crash came after the old one moved away: put it back
        elif rest.startswith("old-") or name.endswith(".tmp"):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = False, directory: bool = False,
                kind: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces ``path`` in one step.

    On any exception the temporary is removed and ``path`` (if it existed) is left untouched.
    ``kind``: what an existing ``path`` must be to be replaced (see :func:`check_output`;
    default "artifact" for directories, "file" otherwise)."""
    path = Path(path)
    recover(path)
    check_output(path, overwrite, kind or ("artifact" if directory else "file"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    (tmp / WRITER_MARK).touch()  # proves to a later recover() that rqgmm made this leftover
    target = tmp if directory else tmp / path.name
    try:
        yield target
        if directory:
            (tmp / WRITER_MARK).unlink()  # the output directory itself: no marker left inside
        _follow_umask(tmp)
        _fsync_tree(tmp)
        if path.is_dir() and not path.is_symlink():
            if not _exchange(tmp, path):  # two renames; recover() undoes a crash between them
                backup = path.with_name(f".{path.name}.old-{os.getpid()}")
                (path / WRITER_MARK).touch()
                os.replace(path, backup)
                os.replace(target, path)
                shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(target, path)
        _fsync_directory(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
