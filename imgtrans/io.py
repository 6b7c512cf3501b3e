"""Files: atomic writes of files and folders, temporaries, checksums. A leaf module.

Every file imgtrans writes goes through [atomic_write][imgtrans.io.atomic_write]: data goes to
``.NAME.tmp-PID`` beside its destination (shortened, with a hash of the name, where the file
system's name limit needs it), is flushed and fsynced and renamed over it, so a crash, a kill or a
full disk leaves the old file or the new one, never a mix; a failure is one line saying what was
kept ([WriteError][imgtrans.io.WriteError]). Folders are written the same way, whole
([atomic_folder][imgtrans.io.atomic_folder]). Nothing a user owns is replaced unless asked
([refuse_existing][imgtrans.io.refuse_existing]). A temporary whose writer has died is removed by
[remove_stale_temporaries][imgtrans.io.remove_stale_temporaries]. Images: [imgtrans.images][].
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterator, Union


PathLike = Union[str, os.PathLike]

_TEMPORARY = re.compile(r"^\..+\.(tmp|part)-(\d+)$")


# ------------------------------------------------------------------------------------------ files
class WriteError(OSError):
    """A failed write (a full disk...): one line saying what was kept; ``strerror`` is the system's reason."""

    def __init__(self, errno_: int | None, strerror: str, filename: str, message: str) -> None:
        super().__init__(errno_, strerror, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


def temporary_path(path: PathLike, kind: str = "tmp") -> Path:
    """``.NAME.KIND-PID`` beside ``path``: the name every writer of imgtrans uses for unfinished files.

    A name too long for the folder's file system (255 bytes on most) is shortened, keeping a
    hash of the whole name so two destinations never share a temporary name.
    """
    path = Path(path)
    suffix = f".{kind}-{os.getpid()}"
    name = f".{path.name}{suffix}"
    limit = _name_limit(path.parent)
    if len(os.fsencode(name)) <= limit:
        return path.with_name(name)
    tail = f"~{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:12]}{suffix}"
    stem, budget = path.name, limit - len(os.fsencode(f".{tail}"))
    while len(os.fsencode(stem)) > budget:
        stem = stem[:-1]
    return path.with_name(f".{stem}{tail}")


def _name_limit(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing parent) takes."""
    with contextlib.suppress(OSError, ValueError, AttributeError, StopIteration):
        return int(os.pathconf(next(p for p in (folder, *folder.parents) if p.exists()), "PC_NAME_MAX"))
    return 255


def refuse_existing(path: PathLike, overwrite: bool, what: str = "") -> None:
    """Refuse to replace ``path`` unless ``overwrite``: the one check of every writer of a user's file or folder.

    An empty folder counts as absent. The message names ``overwrite=True``; its ``cli_message``
    names ``--overwrite`` (the command line prints that one).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if overwrite or not (path.exists() or path.is_symlink()) or (path.is_dir() and not any(path.iterdir())):
        return
    shown = f"{what} {path}".strip()
    kept = f"{shown} already exists and was left as it is; pass"
    error = FileExistsError(f"{kept} overwrite=True to replace it")
    error.cli_message = f"{kept} --overwrite to replace it, or choose another name"
    raise error


def atomic_write(path: PathLike, data: bytes | str | Callable[[Path], None], *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically: to a temporary file beside it, flushed and fsynced, then renamed.

    Args:
        path: the destination; its folder is created if needed.
        data: bytes, text (UTF-8), or a function that writes the file at the path it is given.
        overwrite: replace an existing ``path``; ``False`` refuses with
            [refuse_existing][imgtrans.io.refuse_existing] before anything is written.

    Raises:
        WriteError: the write failed (a full or read-only disk); ``path`` is left as it was and
            the temporary file is removed, and the message says so.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    existed = path.exists()
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(data):
            data(temporary)
        else:
            temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
        fsync_folder(path.parent)
    except OSError as error:
        if isinstance(error, WriteError):
            raise
        kept = f"the previous {path.name} is kept whole" if existed else f"no {path.name} was created"
        reason = error.strerror or str(error)
        message = f"cannot write {path}: {reason}; nothing was written, {kept}"
        raise WriteError(error.errno, reason, str(path), message) from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def atomic_link(source: PathLike, path: PathLike) -> Path:
    """Make ``path`` another name of the file ``source``, atomically: a hard link renamed over ``path``.

    No byte is copied and ``source`` is never absent (a checkpoint kept as the previous one);
    where the file system has no hard links, an atomic copy.
    """
    source, path = Path(source), Path(path)
    temporary = temporary_path(path)
    temporary.unlink(missing_ok=True)
    try:
        try:
            os.link(source, temporary)
        except OSError:  # a file system without hard links: a copy
            return atomic_write(path, source.read_bytes())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def atomic_folder(path: PathLike, *, overwrite: bool = False, replaceable: Callable[[str], bool] | None = None,
                  what: str = "", keep_others: bool = False) -> Iterator[Path]:
    """Write a folder atomically: yield a temporary sibling to fill, then swap it into place.

    An existing folder is exchanged with the new one in one step (``renameat2`` with
    ``RENAME_EXCHANGE`` on Linux; elsewhere it is moved aside first) and removed only once the new
    one is in place, so a crash leaves the old folder or the new one, never a mix. A failure in the
    ``with`` body removes the temporary folder and leaves ``path`` as it was.

    Args:
        path: the folder to write.
        overwrite: replace an existing, non-empty ``path`` (see [refuse_existing][imgtrans.io.refuse_existing]).
        replaceable: which names in an existing folder this writer may discard; anything else (the
            user's own files) is refused even with ``overwrite``. ``None``: any name.
        what: how messages name the folder (``"the model folder"``).
        keep_others: instead of refusing the names ``replaceable`` does not name, keep them: they are
            hard-linked into the new folder before the swap (no byte copied; the old folder holds
            them until the new one is in place), as a run's ``model/`` keeps the user's notes.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: ``path`` is a file, or holds files ``replaceable`` does not name.
        WriteError: a write failed; nothing changed at ``path``.
    """
    path = Path(path)
    shown = f"{what} {path}".strip()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder; choose a folder name that does not exist yet")
    refuse_existing(path, overwrite, what)
    foreign: list[str] = []
    if replaceable is not None and path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if not (replaceable(p.name) or _TEMPORARY.match(p.name)))
        if foreign and not keep_others:
            raise ValueError(
                f"{shown} holds files imgtrans did not write ({', '.join(foreign[:5])}{' ...' * (len(foreign) > 5)}); "
                "nothing was changed. Move them elsewhere, or choose another folder"
            )
    existed = path.is_dir()
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        yield temporary
        for name in foreign if keep_others and existed else ():  # the user's files, into the new folder
            old = path / name
            if old.is_dir() and not old.is_symlink():
                shutil.copytree(old, temporary / name, symlinks=True, copy_function=os.link)
            elif not (temporary / name).exists():
                os.link(old, temporary / name, follow_symlinks=False)
        fsync_folder(temporary)
        if existed:
            _swap_folders(temporary, path)  # ``temporary`` now holds the old folder
        else:
            os.replace(temporary, path)
        fsync_folder(path.parent)
    except OSError as error:
        reason = error.strerror or str(error)
        where = f" ({Path(error.filename).name})" if getattr(error, "filename", None) else ""
        kept = f"the previous {path.name} is kept as it was" if existed else f"no {path.name} was created"
        message = f"cannot write {shown}{where}: {reason}; nothing was written, {kept}"
        raise WriteError(error.errno, reason, str(path), message) from None
    finally:  # (a symbolic link swapped out is removed as a link: what it points to is never touched)
        temporary.unlink() if temporary.is_symlink() else shutil.rmtree(temporary, ignore_errors=True)


def _swap_folders(new: Path, old: Path) -> None:
    """Put ``new`` at ``old``'s name and ``old`` at ``new``'s: atomically where the kernel can."""
    if _rename_exchange(new, old):
        return
    aside = temporary_path(old, "old")  # never removed by remove_stale_temporaries: it may be the only copy
    os.replace(old, aside)
    try:
        os.replace(new, old)
    except OSError:
        os.replace(aside, old)
        raise
    os.replace(aside, new)


def _rename_exchange(a: Path, b: Path) -> bool:
    """``renameat2(a, b, RENAME_EXCHANGE)``; ``False`` where the system or file system has no such call."""
    try:
        import ctypes

        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def fsync_folder(folder: PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Remove the unfinished files or folders (``.NAME.tmp-PID``, ``.NAME.part-PID``) of writers that have died.

    Files of a process that is still running are left alone. Returns what was removed.
    """
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and not process_alive(int(match.group(2))):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
