"""Shared fixtures. Reference data is read in place, from one setting:

    AASIST_REFERENCE=/path/to/shared/reference   (default: ../shared/reference beside the repository)

Tests that need it are skipped, with that reason, where it is absent.
"""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

REFERENCE_DIR = Path(os.environ.get("AASIST_REFERENCE", REPO_ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE_DIR} (set AASIST_REFERENCE)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def la_tiny(reference_dir) -> Path:
    """The flac folder of the reference LA_tiny eval set (6 utterances)."""
    return reference_dir / "LA_tiny" / "ASVspoof2019_LA_eval" / "flac"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


def _load_script(name: str):
    """scripts/<name>.py as a module (scripts/ is not a package), so tests can call its main()."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    return _load_script
