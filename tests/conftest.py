"""Shared fixtures. Reference data is read in place, from one setting:

    AASIST_REFERENCE=/path/to/shared/reference   (default: ../shared/reference beside the repository)

Tests that need it are skipped, with that reason, where it is absent; under ``CI=true`` they fail with
the same message instead, so a CI job whose reference data went missing cannot pass by skipping.
A test that only needs some input makes its own (in tmp_path) rather than ask for the reference.
"""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import models  # noqa: E402,F401  (registers the architectures whose configs utils.config validates)

REFERENCE_DIR = Path(os.environ.get("AASIST_REFERENCE", REPO_ROOT.parent / "shared" / "reference"))
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        message = f"reference data not found at {REFERENCE_DIR} (set AASIST_REFERENCE)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def la_tiny(reference_dir) -> Path:
    """The flac folder of the reference LA_tiny eval set (6 utterances)."""
    return reference_dir / "LA_tiny" / "ASVspoof2019_LA_eval" / "flac"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
