"""Atomic file writes (a reader sees the old file or the whole new one, never half of one), a check that an
output can be written before the work that fills it, file names that always print, and loading weights
without running pickled code."""
import contextlib
import json
import os
import pickle
import re
import struct
import tempfile
import warnings
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

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


def read_json(path: str | os.PathLike, what: str = "JSON file", expect: type | None = None) -> Any:
    """A JSON file's value, or an InputError naming `path` (and the line, for a syntax error): missing, not
    UTF-8, not JSON, an integer of over 4,300 digits or nesting too deep for Python's parser, or (with `expect`,
    e.g. `dict`) a value of another type. A byte-order mark is dropped."""
    path = Path(path)
    shown = printable_path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{what} not found: {shown}") from None
    except IsADirectoryError:
        raise InputError(f"{shown} is a folder, not a {what}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {shown}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{shown}: not UTF-8 text (byte {e.start}); a {what} is UTF-8 JSON") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{shown}, line {e.lineno}: not valid JSON ({e.msg})") from None
    except (ValueError, RecursionError) as e:  # an integer of over 4,300 digits; arrays nested too deep
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(";")[0]
        raise InputError(f"{shown}: not a usable {what} ({reason})") from None
    if expect is not None and not isinstance(value, expect):
        raise InputError(f"{shown}: a {what} must hold a JSON {_JSON_NAMES.get(expect, expect.__name__)}, "
                         f"got {_JSON_NAMES.get(type(value), type(value).__name__)}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON, atomically. NaN or infinity (which JSON cannot hold) is an InputError
    naming `path`, and the file is left as it was."""
    with atomic_open(path) as f:
        try:
            json.dump(obj, f, indent=2, allow_nan=False)
        except ValueError as e:
            raise InputError(f"cannot write {printable_path(path)}: {e}") from None
        f.write("\n")


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """Fail now, not after an hour of scoring, if a file cannot be written at ``path`` (``folder``: into ``path``).

    Creates the folder (and its parents) as ``atomic_open`` would, and creates and removes a temporary file
    there. A full disk can still fail the real write later.

    Raises:
        InputError: naming ``path`` and the reason.
    """
    path = Path(path)
    where = path if folder else path.parent
    if not folder and path.is_dir():
        raise InputError(f"cannot write {printable_path(path)}: it is a folder")
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=where, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or str(e)
        if isinstance(e, (FileExistsError, NotADirectoryError)):  # a file stands where a folder is needed
            blocker = next((p for p in (where, *where.parents) if p.exists() and not p.is_dir()), where)
            reason = f"{printable_path(blocker)} is not a folder"
        raise InputError(f"cannot write {printable_path(path)}: {reason}") from None


def printable_path(path: str | os.PathLike) -> str:
    """``path`` as text that prints and encodes as UTF-8: bytes of a name that are not UTF-8 (which Python
    carries as lone surrogates) are shown as ``\\xff`` escapes."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def safe_torch_load(path: str | os.PathLike, allowed_globals: Sequence = (), what: str = "weights") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU (the published weights were saved from CUDA
    tensors): a pickle that names anything beyond tensors, plain containers and ``allowed_globals`` ((class,
    name) pairs, as ``torch.serialization.safe_globals`` takes them) is refused, unrun. A refused, damaged,
    empty or unreadable file is an InputError that names it, as ``what`` ("weights", "run checkpoint")."""
    import torch

    try:
        with torch.serialization.safe_globals(list(allowed_globals)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol")  # refused below, with the file's name
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        forbidden = re.search(r"GLOBAL ([\w.]*\w)", str(e))  # torch's words for a class or function it refused
        if forbidden:
            raise InputError(f"refusing to load {path}: it is not a plain {what} file: its pickle names "
                             f"{forbidden.group(1)}, and weights_only=True runs no pickled code") from None
        reason = _reason(e)
        reason = reason if reason.startswith("its pickle uses") else f"not a PyTorch file ({reason})"
        raise InputError(f"cannot read {what} {path}: {reason}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InputError(f"cannot read {what} {path}: {_reason(e)}") from None
    except (KeyError, IndexError, TypeError, AttributeError, OverflowError, struct.error):
        # torch reads a file that is not a zip archive as the legacy format, whose pickle reader fails on
        # text (a saved web page, a URL, /etc/passwd) with a bare KeyError or IndexError.
        raise InputError(f"cannot read {what} {path}: not a PyTorch file (neither a zip archive nor the "
                         "legacy format torch.save wrote)") from None


_TORCH_LOAD_ADVICE = ("Weights only load failed", "(1)", "(2)", "Please file an issue", "Check the documentation")


def _reason(e: Exception) -> str:
    """The line of a torch.load error that says what is wrong with the file (not torch's general advice)."""
    if isinstance(e, EOFError):
        return "the file is empty or cut short"
    lines = [line.strip().removeprefix("WeightsUnpickler error:").strip() for line in str(e).splitlines()]
    specific = [line for line in lines if line and not line.startswith(_TORCH_LOAD_ADVICE)]
    reason = (specific or [line for line in lines if line] or [type(e).__name__])[0]
    opcode = re.fullmatch(r"Unsupported operand (\d+)", reason)
    if opcode:  # e.g. 149 (FRAME) or 147 (STACK_GLOBAL): pickle protocol 4 or 5, which torch.load never writes
        return (f"its pickle uses opcode {opcode.group(1)} (pickle protocol 4 or later), which the safe loader "
                "does not read; save it again with torch.save's default protocol")
    return reason[:300]


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` that never leaves a half-written checkpoint behind."""
    import torch  # here, so that writing score files and plots does not need torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
