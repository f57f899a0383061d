"""Atomic writes: normal permissions, the old file kept on failure, and a message that names the path."""
import os
import stat

import pytest

from utils.errors import InputError
from utils.io import atomic_open


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
