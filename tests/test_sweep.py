"""scripts/sweep.py through submitit's local executor, and scripts/report.py's table of the runs it made."""
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_utils.demo import write_demo_corpus
from utils import report

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
    # From the runs' own files, independently of utils/report.py:
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
    from utils.provenance import config_sha256
    raw = json.loads((repo_root / "config" / "demo.json").read_text())
    base = config_sha256(load_config(repo_root / "config" / "demo.json"))
    (tmp_path / "explicit.json").write_text(json.dumps({**raw, "pin_memory": True, "precision": "auto"}))  # defaults
    assert config_sha256(load_config(tmp_path / "explicit.json")) == base
    (tmp_path / "other.json").write_text(json.dumps({**raw, "batch_size": 8}))
    assert config_sha256(load_config(tmp_path / "other.json")) != base
