"""Shared fixtures. Reference data is read in place, from one setting:

    AASIST_REFERENCE=/path/to/shared/reference   (default: ../shared/reference beside the repository)

Tests that need it are skipped, with that reason, where it is absent.
"""
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
def repo_root() -> Path:
    return REPO_ROOT
