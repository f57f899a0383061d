"""train.py end to end on the demo corpus with a tiny network: files, resume after SIGKILL, torchrun, failures."""
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from data_utils import TrainSampler, load_split, read_protocol, split_paths
from data_utils.demo import write_demo_corpus
from models import AASIST
from utils.engine import training
from utils.config import load_config
from utils.distributed import DistInfo
from models.fast import prepare_model
from utils.precision import Speed

from helpers import tiny_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "LA"
    write_demo_corpus(out, seed=0, scale=0.1)
    return out


def run_train(repo_root: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/train.py", *args], cwd=repo_root, capture_output=True,
                          text=True, timeout=timeout)


def state_dicts_equal(a: Path, b: Path) -> bool:
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def finished_run(repo_root, corpus, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("run")
    # Two loader workers (persistent), as a real run has, and augmentation (RawBoost 5, the LA recipe, and
    # codecs on half the utterances): resuming must depend on neither.
    config = tiny_config(repo_root, corpus, tmp / "tiny.json", num_epochs=3, num_workers=2,
                         augmentation={"rawboost_algo": 5, "codec_prob": 0.5, "codecs": ["mp3", "vorbis"]})
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(tmp / "run"), "--seed", "7")
    assert result.returncode == 0, result.stderr
    return config, tmp / "run"


def test_training_writes_a_complete_run_folder(finished_run, repo_root, tmp_path):
    config, run = finished_run
    for name in ("config.json", "metric_log.txt", "checkpoint.pth", "dev_scores.txt",
                 "eval_scores_using_best_dev_model.txt", "eval_scores_swa.txt", "weights/best.pth", "weights/swa.pth"):
        assert (run / name).is_file(), name
    events = list(run.glob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(str(events[0])).Reload().Tags()
    assert {"train/loss", "train/lr", "dev/eer_percent", "dev/min_tdcf", "dev/best_eer_percent",
            "train/samples_per_s"} <= set(tags["scalars"])
    if importlib.util.find_spec("matplotlib") is not None:
        assert {"dev/det_curve", "dev/score_histograms"} <= set(tags["images"])
    assert list((run / "weights").glob("epoch_*_*.pth"))
    log = (run / "metric_log.txt").read_text().splitlines()
    assert log[0].split("\t") == ["epoch", "loss", "lr", "dev_eer_percent", "dev_min_tdcf", "seconds"]
    assert [line.split("\t")[0] for line in log[1:]] == ["0", "1", "2"]
    # the saved weights are bare state dicts with the published key names, loadable for scoring
    result = subprocess.run(
        [sys.executable, "scripts/evaluate.py", "--config", str(config), "--eval_set", "eval",
         "--model_path", str(run / "weights" / "best.pth"), "--output_dir", str(tmp_path), "--json",
         str(tmp_path / "m.json"), "--device", "cpu"],
        cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= metrics["eer_percent"] <= 100 and metrics["min_tdcf"] is not None
    assert "A07" in metrics["per_attack_eer_percent"]  # the attack training never saw


def test_resume_after_sigkill_equals_uninterrupted_run(finished_run, repo_root, tmp_path):
    config, reference = finished_run
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "scripts/train.py", "--config", str(config), "--output_dir", str(run),
                             "--seed", "7"], cwd=repo_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (run / "checkpoint.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The kill landed mid-run: the process died of it, and its last checkpoint is before the last epoch.
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed (exit status {proc.returncode})"
    assert (run / "checkpoint.pth").exists(), "the run was killed before its first checkpoint"
    killed_after = torch.load(run / "checkpoint.pth", weights_only=True)["run_state"]["epoch"]
    assert 1 <= killed_after < 3
    result = run_train(repo_root, "--resume", "--output_dir", str(run))
    assert result.returncode == 0, result.stderr
    assert "which is gone; taking the run folder over" in result.stdout  # the killed run's lock
    for name in ("weights/best.pth", "weights/swa.pth"):
        assert state_dicts_equal(reference / name, run / name), name
    resumed = torch.load(run / "checkpoint.pth", weights_only=True)
    uninterrupted = torch.load(reference / "checkpoint.pth", weights_only=True)
    assert all(torch.equal(resumed["model"][k], v) for k, v in uninterrupted["model"].items())
    assert len((run / "metric_log.txt").read_text().splitlines()) == 4  # header + 3 epochs, no duplicate


def test_two_process_torchrun(repo_root, corpus, tmp_path):
    config = tiny_config(repo_root, corpus, tmp_path / "tiny.json", num_epochs=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
         "scripts/train.py", "--config", str(config), "--output_dir", str(tmp_path / "ddp"), "--device", "cpu"],
        cwd=repo_root, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [p.parent for p in tmp_path.rglob("checkpoint.pth")]
    assert runs == [tmp_path / "ddp"]
    assert len((tmp_path / "ddp" / "metric_log.txt").read_text().splitlines()) == 2
    assert (tmp_path / "ddp" / "weights" / "swa.pth").is_file()


@pytest.mark.parametrize("read_every", [1, 100], ids=["read_each_step", "read_at_epoch_end"])
def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_checkpoint(repo_root, corpus, tmp_path, monkeypatch,
                                                                     read_every):
    monkeypatch.setattr(training, "LOSS_READ_STEPS", {"cpu": read_every})  # 100: as on a GPU, steps run ahead of reads
    config = load_config(tiny_config(repo_root, corpus, tmp_path / "tiny.json", num_epochs=3, eval_all_best=False))
    splits = {name: load_split(corpus, name, config.model_config.nb_samp) for name in ("train", "dev", "eval")}
    steps_per_epoch = len(splits["train"].dataset) // config.batch_size
    real_cross_entropy = torch.nn.functional.cross_entropy
    calls = {"n": 0}

    def poisoned(*args, **kwargs):  # NaN from the 2nd step of epoch 1
        calls["n"] += 1
        loss = real_cross_entropy(*args, **kwargs)
        return loss * float("nan") if calls["n"] == steps_per_epoch + 2 else loss

    monkeypatch.setattr(training.F, "cross_entropy", poisoned)
    cpu, speed = torch.device("cpu"), Speed()
    training.seed_everything(1234)
    model = prepare_model(AASIST(config.model_config), cpu, speed)
    run = training.build_run(config, 1234, tmp_path / "run", cpu, speed, DistInfo(), splits, model,
                             TrainSampler(len(splits["train"].dataset), 1234))
    with pytest.raises(FloatingPointError, match="loss is nan at epoch 1, step 1"):
        training.fit(run)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pth", weights_only=True)
    assert checkpoint["run_state"]["epoch"] == 1


NAN_ON_ONE_RANK = """
import sys
from types import SimpleNamespace
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
sys.path.insert(0, sys.argv[1])
from utils.distributed import cleanup, init_distributed
from utils.precision import Speed
from utils.engine.training import train_one_epoch
info = init_distributed("cpu")

class Net(torch.nn.Module):  # NaN logits on rank 1 at step 1 only
    def __init__(self):
        super().__init__()
        self.lin, self.calls = torch.nn.Linear(4, 2), 0
    def forward(self, x, freq_aug=False):
        out, self.calls = self.lin(x), self.calls + 1
        return None, out * float("nan") if info.rank == 1 and self.calls == 2 else out

torch.manual_seed(0)
model = DistributedDataParallel(Net())
loader = DataLoader(TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))), batch_size=2)
run = SimpleNamespace(config=SimpleNamespace(freq_aug=False), device=torch.device("cpu"), dist_info=info,
                      speed=Speed(), train_loader=loader, train_model=model, scheduler=None, steps_per_batch=False,
                      optimizer=torch.optim.SGD(model.parameters(), lr=0.1), writer=None)
try:
    train_one_epoch(run, 0)
except FloatingPointError as e:
    print(f"rank {info.rank}: {e}")
del run, model  # the DDP model holds the process group: gone before gloo is torn down
cleanup(info, together=True)
"""


def test_nan_loss_on_one_rank_stops_every_rank(repo_root, tmp_path):
    script = tmp_path / "nan_on_one_rank.py"
    script.write_text(NAN_ON_ONE_RANK)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519", str(script),
         str(repo_root)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for rank in (0, 1):  # rank 0's own loss was finite: it stops because the losses are averaged
        assert f"rank {rank}: loss is nan at epoch 0, step 1" in result.stdout


def test_missing_audio_is_found_before_training(repo_root, corpus, tmp_path):
    broken = tmp_path / "LA"
    subprocess.run(["cp", "-r", str(corpus), str(broken)], check=True)
    flacs = sorted((broken / "ASVspoof2019_LA_train" / "flac").glob("*.flac"))
    for f in flacs[:7]:
        f.unlink()
    config = tiny_config(repo_root, broken, tmp_path / "tiny.json")
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert f"7 of {len(flacs)} audio files in the protocol are missing" in result.stderr
    assert flacs[0].name in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pth").exists()


def test_run_folder_is_not_overwritten_and_resume_needs_a_checkpoint(finished_run, repo_root, tmp_path):
    config, run = finished_run
    again = run_train(repo_root, "--config", str(config), "--output_dir", str(run))
    assert again.returncode == 2 and "already holds a run; pass --resume" in again.stderr
    nothing = run_train(repo_root, "--resume", "--output_dir", str(tmp_path))
    assert nothing.returncode == 2 and "no checkpoint.pth" in nothing.stderr


def test_demo_command_trains_scores_and_says_where_the_results_are(repo_root, corpus, tmp_path):
    config = tiny_config(repo_root, corpus, tmp_path / "tiny.json", num_epochs=1)
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "scripts/demo.py", "--config", str(config), "--output_dir", str(out),
                             "--device", "cpu"], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "eval_metrics.json").read_text())
    assert 0 <= metrics["eer_percent"] <= 100 and metrics["min_tdcf"] is not None
    assert (out / "weights" / "best.pth").is_file() and f"results in {out}" in result.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "plots" / "det_curve.png").is_file() and f"plots: {out / 'plots'}" in result.stdout


def test_an_epoch_is_the_same_with_and_without_loader_workers(repo_root, corpus, tmp_path):
    config = load_config(tiny_config(repo_root, corpus, tmp_path / "tiny.json", num_epochs=1))
    splits = {name: load_split(corpus, name, config.model_config.nb_samp) for name in ("train", "dev")}
    weights = []
    for workers in (0, 2):
        cpu, speed = torch.device("cpu"), Speed()
        training.seed_everything(5)
        model = prepare_model(AASIST(config.model_config), cpu, speed)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        run = training.build_run(dataclasses.replace(config, num_workers=workers), 5, tmp_path / "run", cpu, speed,
                                 DistInfo(), splits, model, TrainSampler(len(splits["train"].dataset), 5))
        training.train_one_epoch(run, 0)
        weights.append(model.state_dict())
    assert any(not torch.equal(initial[k], weights[1][k]) for k in initial)  # the epoch did train
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_run_folder_in_use_is_refused(repo_root, corpus, tmp_path):
    config = tiny_config(repo_root, corpus, tmp_path / "tiny.json")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")  # this live process owns it
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(run))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{run} is in use by another run (process {socket.gethostname()} {os.getpid()})" in result.stderr
    assert sorted(p.name for p in run.iterdir()) == ["run.lock"]  # nothing written, the owner's lock kept


def test_a_damaged_checkpoint_or_unwritable_folder_is_a_message(finished_run, repo_root, tmp_path):
    _, reference = finished_run
    run = tmp_path / "run"
    run.mkdir()
    data = (reference / "checkpoint.pth").read_bytes()
    (run / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    result = run_train(repo_root, "--resume", "--output_dir", str(run))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot resume: cannot read run checkpoint {run / 'checkpoint.pth'}: " in result.stderr
    torch.save({"model": {}}, run / "checkpoint.pth")
    result = run_train(repo_root, "--resume", "--output_dir", str(run))
    assert result.returncode == 2 and "not this project's run checkpoint (no optimizer" in result.stderr
    (tmp_path / "a_file").write_text("")
    config = tiny_config(repo_root, tmp_path, tmp_path / "tiny.json")
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(tmp_path / "a_file" / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot write to the run folder {tmp_path / 'a_file' / 'run'}" in result.stderr


def forged(checkpoint: dict, **changes) -> dict:
    """A copy of `checkpoint` with `changes`; `run_state_<field>` changes a field of its run state."""
    out = {**checkpoint, "run_state": dict(checkpoint["run_state"])}
    for key, value in changes.items():
        if key.startswith("run_state_"):
            out["run_state"][key.removeprefix("run_state_")] = value
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("make, message", [
    (lambda p, c: p.write_text("hello\n"), "cannot read run checkpoint {p}: not a PyTorch file"),
    (lambda p, c: shutil.copyfile("/etc/passwd", p), "cannot read run checkpoint {p}: not a PyTorch file"),
    (lambda p, c: torch.save(forged(c, run_state_epoch="1"), p), "run_state.epoch is '1', not a count of epochs"),
    (lambda p, c: torch.save(forged(c, run_state_epoch=-5), p), "run_state.epoch is -5, not a count of epochs"),
    (lambda p, c: torch.save(forged(c, seed="abc"), p), "seed is 'abc', not an integer"),
    (lambda p, c: torch.save(forged(c, run_state_history=[]), p), "run_state.history does not hold one record"),
], ids=["text", "passwd", "epoch_text", "epoch_negative", "seed_text", "history"])
def test_a_forged_or_foreign_checkpoint_is_one_line(finished_run, repo_root, tmp_path, make, message):
    _, reference = finished_run
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    path = run / "checkpoint.pth"
    make(path, torch.load(reference / "checkpoint.pth", weights_only=True))
    result = run_train(repo_root, "--resume", "--output_dir", str(run))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message.format(p=path) in result.stderr


def test_resume_with_a_damaged_run_record_stops_before_the_data(finished_run, repo_root, tmp_path):
    _, reference = finished_run
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    text = (run / "run_info.json").read_text()
    (run / "run_info.json").write_text(text[: len(text) // 2])
    result = run_train(repo_root, "--resume", "--output_dir", str(run))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {run / 'run_info.json'}, line ") and "not valid JSON" in result.stderr
    assert "run folder:" not in result.stdout + result.stderr  # printed once the data are loaded


def test_a_fresh_start_replaces_the_record_of_a_start_killed_before_its_first_checkpoint(repo_root, corpus, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    old = {"seed": 1, "config_name": "old", "config_sha256": "0" * 64, "finished": None,
           "sessions": [{"started": "2026-01-01T00:00:00+00:00"}]}
    (run / "run_info.json").write_text(json.dumps(old))  # and no checkpoint: nothing was trained
    config = tiny_config(repo_root, corpus, tmp_path / "tiny.json", num_epochs=1)
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(run), "--seed", "2")
    assert result.returncode == 0, result.stderr
    info = json.loads((run / "run_info.json").read_text())
    assert info["seed"] == 2 and info["config_name"] == "tiny" and len(info["sessions"]) == 1
    assert info["config_sha256"] != "0" * 64 and info["finished"]


def test_a_run_lock_that_is_a_link_is_never_read(repo_root, corpus, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    config = tiny_config(repo_root, corpus, tmp_path / "tiny.json")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").symlink_to(secret)
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(run))
    assert result.returncode == 2 and "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert f"{run} holds a run.lock that is not a run's" in result.stderr
    assert f"remove {run / 'run.lock'}" in result.stderr
    assert secret.read_text() == "password=hunter2\n" and (run / "run.lock").is_symlink()


def test_a_live_lock_says_how_to_stop_its_run(repo_root, corpus, tmp_path):
    config = tiny_config(repo_root, corpus, tmp_path / "tiny.json")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(run))
    assert result.returncode == 2 and f"`kill {os.getpid()}`" in result.stderr


def test_a_bad_file_met_in_a_loader_worker_is_one_line(repo_root, corpus, tmp_path):
    broken = tmp_path / "LA"
    subprocess.run(["cp", "-r", str(corpus), str(broken)], check=True)
    victim = sorted((broken / "ASVspoof2019_LA_train" / "flac").glob("*.flac"))[3]
    x = np.zeros(16000, dtype=np.float32)
    x[100] = np.nan  # a float WAV under the .flac name: its header passes the pre-flight check
    sf.write(victim, x, 16000, format="WAV", subtype="FLOAT")
    config = tiny_config(repo_root, broken, tmp_path / "tiny.json", num_workers=2)
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: audio file {victim} holds 1 NaN or infinite sample")
    assert "Traceback" not in result.stderr and "worker" not in result.stderr


def test_training_on_asvspoof5_as_released(repo_root, corpus, tmp_path):
    """The demo corpus laid out as the ASVspoof 5 release (10-column protocols, flac_T / flac_D / flac_E_eval)."""
    root = tmp_path / "ASVspoof5"
    for split, protocol, folder in (("train", "ASVspoof5.train.tsv", "flac_T"),
                                    ("dev", "ASVspoof5.dev.track_1.tsv", "flac_D"),
                                    ("eval", "ASVspoof5.eval.track_1.tsv", "flac_E_eval")):
        shutil.copytree(split_paths(corpus, split).audio_dir, root / folder)
        rows = [f"{e.speaker} {e.utt_id} F - - - {'-' if e.key == 'bonafide' else 'AC1'} "
                f"{'bonafide' if e.key == 'bonafide' else e.attack} {e.key} -"
                for e in read_protocol(split_paths(corpus, split).protocol)]
        (root / protocol).write_text("\n".join(rows) + "\n")
    config = tiny_config(repo_root, root, tmp_path / "asv5.json", num_epochs=1)
    config.write_text(json.dumps({**json.loads(config.read_text()), "corpus": "asvspoof5"}))
    result = run_train(repo_root, "--config", str(config), "--output_dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "weights" / "best.pth").is_file()
    assert len((tmp_path / "run" / "metric_log.txt").read_text().splitlines()) == 2


def test_the_asvspoof5_baseline_weights_load_with_its_config(repo_root, reference_dir):
    from models import load_model
    model = load_model(repo_root / "config" / "ASVspoof5.json",
                       reference_dir / "weights" / "ASVspoof5_baseline_AASIST.pth", "cpu")
    assert sum(p.numel() for p in model.parameters()) == 297_866
