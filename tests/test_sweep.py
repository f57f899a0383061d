"""scripts/sweep.py through submitit's local executor, and scripts/report.py's table of the runs it made."""
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_utils.demo import write_demo_corpus
from utils.experiments import report
from utils.errors import InputError

from helpers import tiny_config

pytest.importorskip("submitit")


def run_script(repo_root: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"scripts/{script}", *args], cwd=repo_root, capture_output=True,
                          text=True, timeout=400)


def mtimes(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and "submitit" not in p.parts}


@pytest.fixture(scope="module")
def sweep(repo_root, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A 2-seed sweep of a tiny config whose seed-1 run was killed mid-training before the sweep started."""
    tmp = tmp_path_factory.mktemp("sweep")
    write_demo_corpus(tmp / "LA", seed=0, scale=0.1)
    tiny_config(repo_root, tmp / "LA", tmp / "tiny.json")
    sweep_dir = tmp / "sweep"
    killed = sweep_dir / "tiny_seed1"  # the folder the sweep uses for seed 1
    proc = subprocess.Popen([sys.executable, "scripts/train.py", "--config", str(tmp / "tiny.json"), "--seed", "1",
                             "--output_dir", str(killed), "--device", "cpu"], cwd=repo_root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoint.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed (exit status {proc.returncode})"
    assert not json.loads((killed / "run_info.json").read_text())["finished"]
    itw = in_the_wild_release(tmp / "LA", tmp / "release_in_the_wild")
    result = run_script(repo_root, "sweep.py", "--config", str(tmp / "tiny.json"), "--seeds", "1", "2",
                        "--sweep_dir", str(sweep_dir), "--device", "cpu",
                        "--evaluate", "in_the_wild", str(tmp), str(itw / "meta.csv"))  # ROOT holds the release
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp / "tiny.json", sweep_dir, result


def in_the_wild_release(la: Path, out: Path, per_class: int = 6) -> Path:
    """Some demo eval utterances laid out as the In-the-Wild release (16-bit wav, meta.csv)."""
    import soundfile as sf
    out.mkdir()
    rows, taken = ["file,speaker,label"], {"bonafide": 0, "spoof": 0}
    protocol = la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt"
    for line in protocol.read_text().splitlines():
        _, utt, _, _, key = line.split()
        if taken[key] < per_class:
            taken[key] += 1
            x, sr = sf.read(la / "ASVspoof2019_LA_eval" / "flac" / f"{utt}.flac", dtype="int16")
            sf.write(out / f"{len(rows) - 1}.wav", x, sr, subtype="PCM_16")
            rows.append(f"{len(rows) - 1}.wav,Speaker,{'bona-fide' if key == 'bonafide' else 'spoof'}")
    (out / "meta.csv").write_text("\n".join(rows) + "\n")
    return out


def job_logs(sweep_dir: Path) -> str:
    return "".join(p.read_text() for p in sorted((sweep_dir / "submitit").glob("*_log.out")))


def test_sweep_makes_one_finished_run_per_seed_and_resumes_the_killed_one(sweep):
    _, sweep_dir, _ = sweep
    for seed in (1, 2):
        run = sweep_dir / f"tiny_seed{seed}"
        info = json.loads((run / "run_info.json").read_text())
        assert info["seed"] == seed and info["finished"]
        assert len(info["sessions"]) == (2 if seed == 1 else 1)  # the killed run was resumed, not restarted
        for name in ("best_asvspoof2019_la.json", "swa_asvspoof2019_la.json", "best_in_the_wild.json",
                     "swa_in_the_wild.json"):
            assert (run / "evaluation" / name).is_file()
    logs = job_logs(sweep_dir)
    assert f"--output_dir {sweep_dir / 'tiny_seed1'} --resume" in logs
    assert "resuming" in logs


def test_report_mean_and_std_are_those_of_the_runs_files(sweep, repo_root, tmp_path):
    _, sweep_dir, _ = sweep
    result = run_script(repo_root, "report.py", str(sweep_dir), "--format", "json")
    assert result.returncode == 0, result.stderr
    (group,) = json.loads(result.stdout)["groups"]
    assert group["n"] == 2 and sorted(group["seeds"]) == [1, 2]
    runs = [sweep_dir / f"tiny_seed{s}" for s in group["seeds"]]
    # From the runs' own files, independently of utils/experiments/report.py:
    dev = [min(float(line.split("\t")[3]) for line in (r / "metric_log.txt").read_text().splitlines()[1:])
           for r in runs]
    swa = [json.loads((r / "evaluation" / "swa_asvspoof2019_la.json").read_text())["eer_percent"] for r in runs]
    a07 = [json.loads((r / "evaluation" / "best_asvspoof2019_la.json").read_text())["per_attack_eer_percent"]["A07"]
           for r in runs]
    itw = [json.loads((r / "evaluation" / "best_in_the_wild.json").read_text())["eer_percent"] for r in runs]
    for name, values in (("dev_eer_percent", dev), ("swa_asvspoof2019_la_eer_percent", swa),
                         ("asvspoof2019_la_eer_percent[A07]", a07), ("in_the_wild_eer_percent", itw)):
        got = group["metrics"][name]
        assert got["values"] == values
        assert got["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
        assert got["std"] == pytest.approx(statistics.stdev(values), abs=1e-12)
        assert (got["min"], got["max"]) == (min(values), max(values))
    assert group["warnings"] == []
    markdown = run_script(repo_root, "report.py", str(sweep_dir), "--out", str(tmp_path / "t.md"))
    assert markdown.returncode == 0
    text = (tmp_path / "t.md").read_text()
    mean, std = group["metrics"]["dev_eer_percent"]["mean"], group["metrics"]["dev_eer_percent"]["std"]
    assert f"| dev EER (%) | {mean:.3f} ± {std:.3f} |" in text
    assert "Produced by: git" in text and "PyTorch" in text


def test_rerunning_the_sweep_trains_and_scores_nothing_again(sweep, repo_root):
    config, sweep_dir, _ = sweep
    before = mtimes(sweep_dir)
    result = run_script(repo_root, "sweep.py", "--config", str(config), "--seeds", "1", "2",
                        "--sweep_dir", str(sweep_dir), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert mtimes(sweep_dir) == before
    assert job_logs(sweep_dir).count("not trained again") == 2


def test_report_flags_runs_that_differ_in_how_they_were_made(sweep, repo_root, tmp_path):
    import shutil
    _, sweep_dir, _ = sweep
    for seed in (1, 2):
        shutil.copytree(sweep_dir / f"tiny_seed{seed}", tmp_path / f"tiny_seed{seed}")
    info_path = tmp_path / "tiny_seed2" / "run_info.json"
    info = json.loads(info_path.read_text())
    info["sessions"][0].update(torch="2.4.0+cu121", precision="bf16")
    info_path.write_text(json.dumps(info))
    result = run_script(repo_root, "report.py", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "WARNING: runs averaged here differ in torch" in result.stdout
    assert "WARNING: runs averaged here differ in precision" in result.stdout


def test_sweep_and_report_refuse_bad_input_by_name(repo_root, tmp_path):
    result = run_script(repo_root, "report.py", str(tmp_path))
    assert result.returncode == 2 and "holds no run" in result.stderr and "Traceback" not in result.stderr
    result = run_script(repo_root, "sweep.py", "--config", "config/demo.json", "--seeds", "1",
                        "--evaluate", "asvspoof2021_la", str(tmp_path / "nowhere"), str(tmp_path),
                        "--sweep_dir", str(tmp_path / "s"))
    assert result.returncode == 2 and "not found" in result.stderr and "nowhere" in result.stderr
    result = run_script(repo_root, "sweep.py", "--config", "config/demo.json", "--seeds", "1", "1",
                        "--sweep_dir", str(tmp_path / "s"))
    assert result.returncode == 2 and "repeated seed" in result.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "demo.json").write_text((repo_root / "config" / "demo.json").read_text())
    result = run_script(repo_root, "sweep.py", "--config", "config/demo.json", str(tmp_path / "other" / "demo.json"),
                        "--seeds", "1", "--sweep_dir", str(tmp_path / "s"))
    assert result.returncode == 2 and "share a file name" in result.stderr


def test_a_failed_job_is_reported_with_its_commands_error(repo_root, tmp_path):
    config = json.loads((repo_root / "config" / "demo.json").read_text())
    config.update(database_path=str(tmp_path / "nowhere"))
    (tmp_path / "bad.json").write_text(json.dumps(config))
    result = run_script(repo_root, "sweep.py", "--config", str(tmp_path / "bad.json"), "--seeds", "3",
                        "--sweep_dir", str(tmp_path / "s"), "--device", "cpu")
    assert result.returncode == 2
    assert "error: seed 3 (bad.json) failed: cannot read protocol file" in result.stderr
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


def test_a_changed_config_of_the_same_name_is_refused_not_reused(sweep, repo_root, tmp_path):
    """Reusing the runs would report the old config's numbers as the new one's."""
    config, sweep_dir, _ = sweep
    changed = tmp_path / "changed" / config.name  # same file name, so the same run folders
    changed.parent.mkdir()
    changed.write_text(json.dumps({**json.loads(config.read_text()), "num_epochs": 3}))
    before = mtimes(sweep_dir)
    result = run_script(repo_root, "sweep.py", "--config", str(changed), "--seeds", "1", "2",
                        "--sweep_dir", str(sweep_dir), "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {sweep_dir.resolve() / 'tiny_seed1'} holds a run of another config")
    assert "another --sweep_dir" in result.stderr
    assert mtimes(sweep_dir) == before


def test_sweep_refuses_a_damaged_run_record_and_a_file_as_sweep_dir(sweep, repo_root, tmp_path):
    config, sweep_dir, _ = sweep
    shutil.copytree(sweep_dir / "tiny_seed1", tmp_path / "s" / "tiny_seed1")
    record = tmp_path / "s" / "tiny_seed1" / "run_info.json"
    record.write_text(record.read_text()[:50])
    result = run_script(repo_root, "sweep.py", "--config", str(config), "--seeds", "1", "--sweep_dir",
                        str(tmp_path / "s"), "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {record.resolve()}, line ") and "not valid JSON" in result.stderr
    (tmp_path / "a_file").write_text("")
    result = run_script(repo_root, "sweep.py", "--config", str(config), "--seeds", "1", "--sweep_dir",
                        str(tmp_path / "a_file"), "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == f"error: --sweep_dir {tmp_path / 'a_file'} is a file, not a folder\n"


def _set_cell(text: str, line: int, column: int, value: str) -> str:
    """`text`, a tab-separated table, with one cell replaced (0-based line and column)."""
    lines = text.splitlines()
    cells = lines[line].split("\t")
    cells[column] = value
    lines[line] = "\t".join(cells)
    return "\n".join(lines) + "\n"


def _damage(run: Path, name: str, text: str | bytes) -> Path:
    path = run / name
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return path


@pytest.mark.parametrize("name, damage, message", [
    ("run_info.json", lambda t: t[:40], r"run_info.json, line \d+: not valid JSON"),
    ("run_info.json", lambda t: json.dumps({**json.loads(t), "sessions": "abc"}),
     "run_info.json: sessions must be a list"),
    ("run_info.json", lambda t: json.dumps({**json.loads(t), "config_sha256": [1]}),
     r"run_info.json: config_sha256 must be a hex digest, got \[1\]"),
    ("run_info.json", lambda t: json.dumps({**json.loads(t), "seed": "abc"}), "run_info.json: seed must be an integer"),
    ("metric_log.txt", lambda t: _set_cell(t, 2, 3, "nan"),
     r"metric_log.txt, line 3: dev_eer_percent is 'nan', not a finite number"),
    ("metric_log.txt", lambda t: t.encode() + b"\xff\xfe\n", "metric_log.txt: not UTF-8 text"),
    ("evaluation/best_asvspoof2019_la.json", lambda t: json.dumps({**json.loads(t), "eer_percent": "abc"}),
     "best_asvspoof2019_la.json: eer_percent is 'abc', not a finite number"),
    ("evaluation/best_asvspoof2019_la.json", lambda t: "[1]",
     "best_asvspoof2019_la.json: a metrics JSON must hold a JSON object, got array"),
], ids=["truncated", "sessions", "sha", "seed", "nan_eer", "not_utf8", "eer_text", "list"])
def test_report_names_the_damaged_file_of_a_run(sweep, tmp_path, name, damage, message):
    """A table that skipped the run, or read a wrong number from it, would pass for the sweep's result."""
    _, sweep_dir, _ = sweep
    run = tmp_path / "tiny_seed1"
    shutil.copytree(sweep_dir / "tiny_seed1", run)
    _damage(run, name, damage((run / name).read_text()))
    with pytest.raises(InputError, match=message) as info:
        report.read_run(run)
    assert str(run / name) in str(info.value)


def test_report_of_a_damaged_run_is_one_line(sweep, repo_root, tmp_path):
    _, sweep_dir, _ = sweep
    shutil.copytree(sweep_dir, tmp_path / "s", ignore=shutil.ignore_patterns("submitit"))
    log = tmp_path / "s" / "tiny_seed2" / "metric_log.txt"
    log.write_text(_set_cell(log.read_text(), 1, 3, "inf"))
    result = run_script(repo_root, "report.py", str(tmp_path / "s"))
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.startswith(f"error: {log}, line 2: ") and result.stderr.count("\n") == 1


def test_a_job_that_fails_outside_its_commands_shows_the_exception(tmp_path):
    from utils.experiments.sweep import _job_error
    stderr = tmp_path / "log.err"
    stderr.write_text("Traceback (most recent call last):\n  ...\nValueError: something broke\n")
    exc = RuntimeError("Job (task=0) failed during processing with trace:\n----------------------\n"
                       "Traceback (most recent call last):\n  File x\nValueError: something broke\n"
                       "----------------------\nYou can check full logs with 'job.stderr(0)'")
    assert _job_error(stderr, exc) == "ValueError: something broke"
    stderr.write_text("error: cannot read protocol file x\nTraceback ...\n")
    assert _job_error(stderr, exc) == "cannot read protocol file x"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_sigterm_stops_the_sweep_its_job_and_the_training(repo_root, tmp_path):
    write_demo_corpus(tmp_path / "LA", seed=0, scale=0.1)
    config = tiny_config(repo_root, tmp_path / "LA", tmp_path / "long.json", num_epochs=200)
    sweep_dir = tmp_path / "sweep"
    lock = sweep_dir / "long_seed1" / "run.lock"
    proc = subprocess.Popen([sys.executable, "scripts/sweep.py", "--config", str(config), "--seeds", "1",
                             "--sweep_dir", str(sweep_dir), "--device", "cpu"], cwd=repo_root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trainer = None
    try:
        deadline = time.time() + 240
        while trainer is None and proc.poll() is None and time.time() < deadline:
            with contextlib.suppress(OSError, IndexError, ValueError):
                trainer = int(lock.read_text().split()[1])
            time.sleep(0.1)
        assert trainer is not None, "train.py did not start"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 130 and "sweep stopped" in stderr and "Traceback" not in stderr
        deadline = time.time() + 20
        while _running(trainer) and time.time() < deadline:
            time.sleep(0.1)
        assert not _running(trainer), "train.py outlived the sweep"
    finally:
        if proc.poll() is None:
            proc.kill()
        if trainer is not None and _running(trainer):
            os.kill(trainer, signal.SIGKILL)  # the training this test started, left behind


def test_corpus_tables_give_per_attack_eer_from_the_pooled_column(tmp_path):
    path = tmp_path / "best_asvspoof2021_la.json"
    path.write_text(json.dumps({"eer_percent": 3.5, "min_tdcf": 0.3, "tables": {"eer_percent": {
        "rows": ["A07", "A08", "Pooled"], "columns": ["LA-C1", "LA-C2", "Pooled"],
        "values": [[1.0, 2.0, 1.5], [3.0, None, 3.0], [2.0, 2.0, 3.5]]}}}))
    assert report.evaluation_metrics(path, "asvspoof2021_la") == {
        "asvspoof2021_la_eer_percent": 3.5, "asvspoof2021_la_min_tdcf": 0.3,
        "asvspoof2021_la_eer_percent[A07]": 1.5, "asvspoof2021_la_eer_percent[A08]": 3.0}


def test_summary_of_one_run_has_no_standard_deviation():
    assert report.summary([2.0]) == {"mean": 2.0, "std": None, "min": 2.0, "max": 2.0, "values": [2.0]}


def test_config_hash_depends_on_values_not_on_spelled_out_defaults(repo_root, tmp_path):
    from utils.config import load_config
    from utils.experiments.provenance import config_sha256
    raw = json.loads((repo_root / "config" / "demo.json").read_text())
    base = config_sha256(load_config(repo_root / "config" / "demo.json"))
    (tmp_path / "explicit.json").write_text(json.dumps({**raw, "pin_memory": True, "precision": "auto"}))  # defaults
    assert config_sha256(load_config(tmp_path / "explicit.json")) == base
    (tmp_path / "other.json").write_text(json.dumps({**raw, "batch_size": 8}))
    assert config_sha256(load_config(tmp_path / "other.json")) != base
