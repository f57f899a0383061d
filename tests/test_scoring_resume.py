"""score_to_file: chunks on disk, and the same file from one pass, a killed and resumed job, or two ranks."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from utils.distributed import DistInfo
from utils.errors import InputError
from utils.scoring import score_dataset, score_to_file

N, NB_SAMP, BATCH, CHUNK = 50, 64, 4, 8  # 7 chunks: 6 of 8 items and one of 2
CPU = torch.device("cpu")


class Items(Dataset):
    """N generated waveforms with their ids, as `EvalDataset` gives them."""

    def __init__(self):
        self.x = torch.randn(N, NB_SAMP, generator=torch.Generator().manual_seed(0))  # (N, nb_samp)
        self.entries = [SimpleNamespace(utt_id=f"utt_{i:02d}", attack="-", key="bonafide") for i in range(N)]

    def __len__(self):
        return N

    def __getitem__(self, i):
        return self.x[i], self.entries[i].utt_id


class Net(torch.nn.Module):
    """A fixed linear classifier that counts the items it scores and can be made slow."""

    def __init__(self, seconds_per_batch: float = 0.0):
        super().__init__()
        self.lin = torch.nn.Linear(NB_SAMP, 2)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(2, NB_SAMP, generator=g))
            self.lin.bias.copy_(torch.randn(2, generator=g))
        self.seconds_per_batch, self.items = seconds_per_batch, 0

    def forward(self, x):
        time.sleep(self.seconds_per_batch)
        self.items += len(x)
        return None, self.lin(x)


def write_lines(path, ids, scores):
    Path(path).write_text("".join(f"{u} {s!r}\n" for u, s in zip(ids, scores.tolist())))


def job(out, seconds_per_batch: float = 0.0, dist_info: DistInfo = DistInfo(), **kwargs):
    """Score `Items()` with `Net` into `out`; the scores and how many items this process scored."""
    model = Net(seconds_per_batch)
    scores = score_to_file(model, Items(), out, write_lines, BATCH, CPU, dist_info=dist_info, chunk_size=CHUNK,
                           **kwargs)
    print(f"rank {dist_info.rank} scored {model.items} items", flush=True)
    return scores, model.items


JOB = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from test_scoring_resume import job
from utils.distributed import cleanup, init_distributed
info = init_distributed("cpu")
try:
    job(sys.argv[2], float(sys.argv[3]), info)
finally:
    cleanup(info)
"""


def job_command(tmp_path, repo_root, out, seconds_per_batch, *launcher):
    script = tmp_path / "score_job.py"
    script.write_text(JOB)
    return [sys.executable, *launcher, str(script), str(repo_root), str(out), str(seconds_per_batch)]


def chunk_files(parts):
    return sorted(p.name for p in parts.glob("*.npz"))


def test_uninterrupted_equals_one_pass_and_the_file_is_right(tmp_path):
    seen = []

    def spy(path, ids, scores):  # the work folder as the final file is written
        seen.extend(sorted(p.name for p in Path(path).parent.iterdir()))
        write_lines(path, ids, scores)

    out = tmp_path / "scores.txt"
    model = Net()
    scores = score_to_file(model, Items(), out, spy, BATCH, CPU, chunk_size=CHUNK)
    assert seen == ["00-08.npz", "08-16.npz", "16-24.npz", "24-32.npz", "32-40.npz", "40-48.npz", "48-50.npz",
                    "job.json"]
    one_pass = score_dataset(Net(), Items(), BATCH, CPU)
    assert scores.dtype == np.float32 and model.items == N
    np.testing.assert_array_equal(scores, one_pass.scores)  # same batches of 4: equal, not just close
    assert out.read_text().splitlines() == [f"utt_{i:02d} {s!r}" for i, s in enumerate(scores.tolist())]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.txt"]  # the work folder is gone


def test_a_killed_job_resumes_to_the_same_file(tmp_path, repo_root):
    expected = tmp_path / "once.txt"
    job(expected)
    out, parts = tmp_path / "scores.txt", tmp_path / "scores.txt.parts"
    proc = subprocess.Popen(job_command(tmp_path, repo_root, out, 0.1), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while len(chunk_files(parts)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    done = chunk_files(parts)
    assert 2 <= len(done) < 7 and not out.exists()

    _, items = job(out, resume=True)
    assert items == N - CHUNK * len(done)  # the finished chunks were not scored again
    assert out.read_bytes() == expected.read_bytes()
    assert not parts.exists()


def test_two_ranks_write_the_file_one_process_writes(tmp_path, repo_root):
    expected = tmp_path / "once.txt"
    job(expected)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "scores.txt"
    result = subprocess.run(
        job_command(tmp_path, repo_root, out, 0.0, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    f"--master_port={port}"),
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    # Chunks round-robin: rank 0 takes 0, 2, 4, 6 (8 + 8 + 8 + 2 items), rank 1 takes 1, 3, 5.
    assert "rank 0 scored 26 items" in result.stdout and "rank 1 scored 24 items" in result.stdout
    assert out.read_bytes() == expected.read_bytes()
    assert not (tmp_path / "scores.txt.parts").exists()


def test_a_work_folder_is_refused_without_resume_and_resumed_only_by_the_same_job(tmp_path):
    out, parts = tmp_path / "scores.txt", tmp_path / "scores.txt.parts"

    def crash(path, ids, scores):  # killed after the last chunk, before the final file
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score_to_file(Net(), Items(), out, crash, BATCH, CPU, chunk_size=CHUNK)
    assert len(chunk_files(parts)) == 7 and not out.exists()

    with pytest.raises(InputError, match=re.escape(f"{parts} holds the chunks of an unfinished scoring job; "
                                                   "pass resume")):
        job(out)
    with pytest.raises(InputError, match=re.escape(f"cannot resume from {parts}: it was started with "
                                                   "chunk_size 8 (now 16)")):
        score_to_file(Net(), Items(), out, write_lines, BATCH, CPU, resume=True, chunk_size=16)
    other = Net()
    with torch.no_grad():
        other.lin.bias += 1
    with pytest.raises(InputError, match="it was started with other model weights"):
        score_to_file(other, Items(), out, write_lines, BATCH, CPU, resume=True, chunk_size=CHUNK)

    _, items = job(out, resume=True)
    assert items == 0 and len(out.read_text().splitlines()) == N and not parts.exists()
