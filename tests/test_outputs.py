"""The outputs of scripts/infer.py and scripts/evaluate.py: each is checked to be writable before any scoring,
and one that still fails at the end (a full disk) loses no result: the table or the metrics are printed all
the same, the other outputs written, and the exit status is 2.

The scripts run as they do for a user, in a subprocess; a full disk is `utils.io.atomic_open` failing for
paths under a folder named FULL, injected at start-up by a `sitecustomize` module.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_evaluate_cli import CM_LINES

FULL_DISK = '''
import contextlib, sys
sys.path.insert(0, {repo!r})
import utils.io
from utils.errors import InputError
_atomic_open = utils.io.atomic_open

@contextlib.contextmanager
def atomic_open(path, mode="w"):
    if "FULL" in str(path):
        raise InputError(f"cannot write {{path}}: No space left on device")
    with _atomic_open(path, mode) as f:
        yield f

utils.io.atomic_open = atomic_open
'''


@pytest.fixture
def run_script(repo_root, tmp_path):
    """Run scripts/<name>.py from the repository root with writes under a FULL folder failing."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FULL_DISK.format(repo=str(repo_root)))
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(name: str, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, f"scripts/{name}.py", *map(str, args)], cwd=repo_root, env=env,
                              capture_output=True, text=True, timeout=300)
    return run


@pytest.fixture
def cm_file(tmp_path) -> Path:
    path = tmp_path / "cm.txt"
    path.write_text(CM_LINES)
    return path


def test_infer_prints_the_table_when_the_output_fails_at_the_end(run_script, reference_dir, la_tiny, tmp_path):
    out = tmp_path / "FULL" / "results.csv"
    result = run_script("infer", la_tiny / "LA_E_2000000.flac", "--config", "config/AASIST-L.json",
                        "--model_path", reference_dir / "weights" / "AASIST-L.pth", "--output", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "LA_E_2000000.flac" in result.stdout and "1 files:" in result.stdout
    assert f"error: cannot write {out}: No space left on device; the results are only in the table above" \
        in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("case", ["score_file", "plot"])
def test_evaluate_checks_its_outputs_before_scoring(run_script, tmp_path, cm_file, case):
    (tmp_path / "file.txt").write_text("x")  # a file where a folder should be
    if case == "score_file":
        # The database is absent too: the score file is checked first, before the set is even read.
        args = ["--config", "config/AASIST-L.json", "--database_path", tmp_path / "absent",
                "--output_dir", tmp_path / "file.txt" / "scores"]
        target = tmp_path / "file.txt" / "scores" / "AASIST-L_eval_scores.txt"
    else:
        pytest.importorskip("matplotlib", reason="plots need the optional matplotlib")
        args, target = ["--scores", cm_file, "--plot", tmp_path / "file.txt"], tmp_path / "file.txt"
    result = run_script("evaluate", *args)
    assert result.returncode == 2
    assert result.stderr == f"error: cannot write {target}: {tmp_path / 'file.txt'} is not a folder\n"
    assert result.stdout == ""  # no metrics: nothing was computed


def test_evaluate_keeps_the_metrics_when_the_score_file_fails(run_script, reference_dir, tmp_path):
    scores_dir, metrics_file = tmp_path / "FULL", tmp_path / "metrics.json"
    result = run_script("evaluate", "--config", "config/AASIST-L.json", "--database_path", reference_dir / "LA_tiny",
                        "--model_path", reference_dir / "weights" / "AASIST-L.pth", "--output_dir", scores_dir,
                        "--json", metrics_file, "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "EER:" in result.stdout
    score_file = scores_dir / "AASIST-L_eval_scores.txt"
    assert f"error: cannot write {score_file}: No space left on device; the scores were not saved" in result.stderr
    metrics = json.loads(metrics_file.read_text())  # the other output is written all the same
    assert "score_file" not in metrics and metrics["eer_percent"] >= 0


def test_evaluate_reports_every_output_that_fails_at_the_end(run_script, tmp_path, cm_file):
    pytest.importorskip("matplotlib", reason="plots need the optional matplotlib")
    plots, metrics_file = tmp_path / "FULL" / "plots", tmp_path / "FULL" / "metrics.json"
    result = run_script("evaluate", "--scores", cm_file, "--plot", plots, "--json", metrics_file)
    assert result.returncode == 2
    assert "EER:" in result.stdout and "A07" in result.stdout
    assert result.stderr == (f"error: cannot write {plots / 'det_curve.png'}: No space left on device\n"
                             f"error: cannot write {metrics_file}: No space left on device; "
                             "the metrics are only in the report above\n")
