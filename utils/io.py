"""Atomic file writes: a reader sees the old file or the whole new one, never half of one."""
import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from utils.errors import InputError

_UMASK = os.umask(0o022)  # read once (os.umask can only read by setting), then put back
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was. A failure to
    write (an OSError: no space, no permission, ...) becomes an InputError that names ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes the file private; give it a normal file's permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise InputError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written checkpoint behind."""
    import torch  # here, so that writing score files and plots does not need torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
