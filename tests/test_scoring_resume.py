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
from utils.engine.scoring import score_dataset, score_to_file

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


# --- a resumed job is the same job, and damage is found before any scoring ------------------------------------

def crashed_job(out, **kwargs):
    """A job killed after its last chunk, before the final file: all 7 chunks on disk."""
    def crash(path, ids, scores):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        score_to_file(Net(), Items(), out, crash, BATCH, CPU, chunk_size=CHUNK, **kwargs)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_chunk_is_found_before_the_rest_is_scored(tmp_path, damage):
    out, parts = tmp_path / "scores.txt", tmp_path / "scores.txt.parts"
    crashed_job(out)
    (parts / "48-50.npz").unlink()  # one chunk left to score
    chunk = parts / "08-16.npz"
    chunk.write_bytes(chunk.read_bytes()[:40] if damage == "truncated" else b"")
    model = Net()
    with pytest.raises(InputError, match=re.escape(f"chunk file {chunk} is missing or damaged")):
        score_to_file(model, Items(), out, write_lines, BATCH, CPU, resume=True, chunk_size=CHUNK)
    assert model.items == 0 and not out.exists()  # nothing scored, nothing written


@pytest.mark.parametrize("record", ["[1]", "{", ""])
def test_a_malformed_job_record_is_named(tmp_path, record):
    out, parts = tmp_path / "scores.txt", tmp_path / "scores.txt.parts"
    crashed_job(out)
    (parts / "job.json").write_text(record)
    with pytest.raises(InputError, match=re.escape(f"cannot resume from {parts}: ") + ".*job.json"):
        score_to_file(Net(), Items(), out, write_lines, BATCH, CPU, resume=True, chunk_size=CHUNK)
    assert len(chunk_files(parts)) == 7  # the chunks are kept


def itw_release(tmp_path, n=12, order=None):
    """n short 16 kHz wav files in an In-the-Wild layout and a meta.csv listing them (in `order`)."""
    import soundfile as sf
    root = tmp_path / "release"
    (root / "release_in_the_wild").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(root / "release_in_the_wild" / f"{i}.wav", rng.uniform(-0.5, 0.5, 3000), 16000, subtype="PCM_16")
    rows = [f"{i}.wav,S {i},{'bona-fide' if i % 3 else 'spoof'}" for i in (order or range(n))]
    keys = root / "release_in_the_wild" / "meta.csv"
    keys.write_text("file,speaker,label\n" + "\n".join(rows) + "\n")
    return root, keys


def corpus_job(root, keys, out, nb_samp=NB_SAMP, resume=False, writer=None):
    """evaluate.py's scoring of a key file, with `Net` (what `data_utils.evaluation.score_keys` runs)."""
    from data_utils.corpora import get_corpus
    from data_utils.evaluation import scoring_trials, score_keys
    corpus = get_corpus("in_the_wild")
    if writer is not None:
        corpus = SimpleNamespace(audio_paths=corpus.audio_paths, score_writer=lambda trials: writer, name=corpus.name)
    config = SimpleNamespace(model_config=SimpleNamespace(nb_samp=nb_samp), loader_workers=lambda: 0)
    model = Net()
    trials = scoring_trials(get_corpus("in_the_wild"), keys, "eval")
    return score_keys(corpus, trials, root, config, lambda: (model, SimpleNamespace(precision="fp32")), out, BATCH,
                      CPU, DistInfo(), resume, nb_samp), model


def test_a_resume_with_other_inputs_is_refused_and_loses_nothing(tmp_path):
    root, keys = itw_release(tmp_path)
    out, parts = tmp_path / "scores.txt", tmp_path / "scores.txt.parts"

    def crash(path, ids, scores):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        corpus_job(root, keys, out, writer=crash)
    kept = sorted(parts.iterdir())
    cases = {"nb_samp 64 (now 48)": dict(nb_samp=48),
             "other trials (or another order of them)": dict(keys=itw_release(tmp_path / "b", order=[1, 0, *range(2, 12)])[1]),
             "audio_root": dict(root=itw_release(tmp_path / "c")[0])}
    for message, change in cases.items():
        args = {"root": root, "keys": keys, "nb_samp": NB_SAMP, **change}
        with pytest.raises(InputError, match=re.escape(f"cannot resume from {parts}: it was started with ")
                           + ".*" + re.escape(message)):
            corpus_job(args["root"], args["keys"], out, args["nb_samp"], resume=True)
        assert sorted(parts.iterdir()) == kept and not out.exists()  # no chunk deleted, no file written
    scores, model = corpus_job(root, keys, out, resume=True)
    assert model.items == 0 and len(out.read_text().splitlines()) == 12


def test_a_key_id_with_white_space_is_refused_before_scoring(tmp_path):
    from data_utils.corpora import get_corpus
    from data_utils.evaluation import scoring_trials
    _, keys = itw_release(tmp_path, n=2)
    keys.write_text("file,speaker,label\n0.wav,A,spoof\nmy file.wav,B,bona-fide\n")
    with pytest.raises(InputError, match=r"meta\.csv: trial id 'my file\.wav' is empty or holds white space"):
        scoring_trials(get_corpus("in_the_wild"), keys, "eval")
