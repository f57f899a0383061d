"""Atomic writes: normal permissions, the old file kept on failure, and a message that names the path; the check
that an output can be written, made before the work; file names that always print."""
import os
import stat

import pytest

from utils.errors import InputError
from utils.io import atomic_open, check_writable, printable_path


def test_atomic_open_gives_normal_permissions_and_names_the_path_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_open(target) as f:
        f.write("x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0o600
    with pytest.raises(InputError, match="cannot write .*out.txt: No space left on device"):
        with atomic_open(target) as f:
            f.write("y")
            raise OSError(28, "No space left on device")
    assert target.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_check_writable_makes_the_folder_and_leaves_nothing_else(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "out.json")
    check_writable(tmp_path / "plots", folder=True)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["new", "new/deeper", "plots"]


@pytest.mark.parametrize("target, folder, reason", [
    ("file.txt/out.json", False, "file.txt is not a folder"),    # a file where the folder should be
    ("file.txt/a/b/out.json", False, "file.txt is not a folder"),
    ("file.txt", True, "file.txt is not a folder"),
    ("folder", False, "it is a folder"),                          # os.replace cannot put a file there
])
def test_check_writable_names_the_path_and_the_reason(tmp_path, target, folder, reason):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError) as info:
        check_writable(tmp_path / target, folder=folder)
    assert str(info.value).startswith(f"cannot write {tmp_path / target}: ") and reason in str(info.value)


def test_printable_path_escapes_bytes_that_are_not_utf8(tmp_path):
    name = os.fsdecode(b"caf\xc3\xa9 bad\xff.wav")  # a valid UTF-8 "é", then a byte that is not UTF-8
    assert printable_path(tmp_path / name) == f"{tmp_path}/café bad\\xff.wav"
    assert printable_path("café.wav") == "café.wav"
