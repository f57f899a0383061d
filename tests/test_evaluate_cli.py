"""scripts/evaluate.py in metrics-only mode: the report, the JSON, and the message a user gets for each bad input."""
import json
import subprocess
import sys

import numpy as np
import pytest

from utils.errors import InputError
from utils.evaluation.score_files import compute_metrics, read_asv_scores, read_cm_scores

CM_LINES = """\
LA_E_1 - bonafide 2.5
LA_E_2 - bonafide 1.5
LA_E_3 - bonafide 0.25
LA_E_4 A07 spoof -1.0
LA_E_5 A07 spoof 0.5
LA_E_6 A19 spoof -2.0
LA_E_7 A19 spoof 1.75
"""
ASV_LINES = """\
bonafide target 4.0
bonafide target 3.0
bonafide nontarget -1.0
bonafide nontarget 0.5
A07 spoof 2.0
A19 spoof -0.5
"""


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def run_cli(repo_root, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/evaluate.py", *map(str, args)],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)


# Each bad input: (file name, its text, whether it is the ASV file, a distinctive part of the message).
BAD_INPUTS = {
    "nan_cm": ("cm.txt", CM_LINES + "LA_E_8 A07 spoof nan\nLA_E_9 A19 spoof -inf\n", False,
               "2 of 6 CM spoof scores are NaN or inf"),
    "nan_asv": ("asv.txt", ASV_LINES + "bonafide target inf\n", True, "1 of 3 ASV target scores are NaN or inf"),
    "no_spoof": ("cm.txt", "".join(l + "\n" for l in CM_LINES.splitlines() if "bonafide" in l), False,
                 "no CM spoof scores"),
    "hard_decisions": ("cm.txt", "a - bonafide 1\nb - bonafide 1\nc A07 spoof 0\nd A08 spoof 0\n", False,
                       "only 2 distinct value(s)"),
    "field_count": ("cm.txt", CM_LINES + "LA_E_8 A07 spoof\n", False, "cm.txt, line 8: expected 4 fields"),
    "bad_score": ("cm.txt", CM_LINES.replace("0.25", "0,25"), False, "cm.txt, line 3: score '0,25' is not a number"),
    "unknown_key": ("cm.txt", CM_LINES.replace("LA_E_5 A07 spoof", "LA_E_5 A07 bonafid"), False,
                    "cm.txt, line 5: unknown key 'bonafid'"),
    "empty": ("cm.txt", "\n  \n", False, "cm.txt: empty score file"),
    "asv_unknown_key": ("asv.txt", ASV_LINES + "bonafide non-target 1.0\n", True,
                        "asv.txt, line 7: unknown key 'non-target'"),
    "asv_no_nontarget": ("asv.txt", "".join(l + "\n" for l in ASV_LINES.splitlines() if "nontarget" not in l), True,
                         "asv.txt: no nontarget lines"),
}


def bad_input_args(tmp_path, case: str) -> tuple[list, str]:
    name, text, is_asv, message = BAD_INPUTS[case]
    cm = write(tmp_path, "cm.txt", CM_LINES)
    asv = write(tmp_path, "asv.txt", ASV_LINES)
    write(tmp_path, name, text)  # replaces the good file of the same name
    return ["--scores", cm, "--asv_scores", asv], message


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_message(tmp_path, case):
    (_, cm, _, asv), message = bad_input_args(tmp_path, case)
    with pytest.raises(InputError) as error:
        compute_metrics(read_cm_scores(cm), read_asv_scores(asv))
    assert message in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="absent.txt: cannot read score file"):
        read_cm_scores(tmp_path / "absent.txt")


# Subprocesses (each imports numpy): the script runs from the repo root and exits 2 cleanly on bad input.

def test_report_and_json_without_asv(repo_root, tmp_path):
    out = tmp_path / "out" / "metrics.json"
    result = run_cli(repo_root, "--scores", write(tmp_path, "cm.txt", CM_LINES), "--json", out)
    assert result.returncode == 0, result.stderr
    assert "not computed (no ASV scores" in result.stdout
    assert "A07" in result.stdout and "A19" in result.stdout
    metrics = json.loads(out.read_text())
    assert metrics["min_tdcf"] is None
    assert list(metrics["per_attack_eer_percent"]) == ["A07", "A19"]
    assert metrics["eer_percent"] == pytest.approx(100 * (1 / 3 + 1 / 4) / 2)  # 1 of 3 bona fide, 1 of 4 spoof


def test_cli_reports_golden_metrics(repo_root, reference_dir):
    result = run_cli(repo_root, "--scores", reference_dir / "cm_scores.txt",
                     "--asv_scores", reference_dir / "asv_scores.txt")
    assert result.returncode == 0, result.stderr
    golden = json.loads((reference_dir / "metrics_golden.json").read_text())
    assert f"EER:        {golden['eer_percent']:.9f} %" in result.stdout
    assert f"min t-DCF:  {golden['min_tdcf']:.9f}" in result.stdout
    assert all(attack in result.stdout for attack in golden["per_attack_eer_percent"])


@pytest.mark.parametrize("case", ["nan_cm", "no_spoof", "field_count", "unknown_key", "asv_no_nontarget"])
def test_cli_exits_2_without_traceback(repo_root, tmp_path, case):
    args, message = bad_input_args(tmp_path, case)
    result = run_cli(repo_root, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_checks_the_json_output_before_the_metrics(repo_root, tmp_path):
    (tmp_path / "file.txt").write_text("x")  # a file where the folder should be
    out = tmp_path / "file.txt" / "metrics.json"
    result = run_cli(repo_root, "--scores", write(tmp_path, "cm.txt", CM_LINES), "--json", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"error: cannot write {out}: {tmp_path / 'file.txt'} is not a folder\n"
    assert "EER" not in result.stdout


def test_plot_writes_det_curve_and_histograms(repo_root, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the optional matplotlib")
    rng = np.random.default_rng(0)
    lines = [f"B{i} - bonafide {rng.normal(2, 1):.4f}" for i in range(300)]
    lines += [f"S{i} A{7 + i % 4:02d} spoof {rng.normal(-2, 1.5):.4f}" for i in range(600)]
    scores = write(tmp_path, "cm.txt", "\n".join(lines) + "\n")
    result = run_cli(repo_root, "--scores", scores, "--plot", tmp_path / "plots")
    assert result.returncode == 0, result.stderr
    for name in ("det_curve.png", "score_histograms.png"):
        png = tmp_path / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize("same_as", ["--scores", "--asv_scores"])
def test_an_output_that_is_an_input_is_refused_before_anything_is_written(repo_root, tmp_path, same_as):
    cm, asv = write(tmp_path, "cm.txt", CM_LINES), write(tmp_path, "asv.txt", ASV_LINES)
    target = cm if same_as == "--scores" else asv
    result = run_cli(repo_root, "--scores", cm, "--asv_scores", asv, "--json", target)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"error: --json {target} is also {same_as}: choose another path for --json\n"
    assert (cm.read_text(), asv.read_text()) == (CM_LINES, ASV_LINES)  # the inputs are as they were
