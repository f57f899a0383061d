"""Score with a model: the one loop behind training (dev and eval each epoch), evaluate.py and
`models.score`; and `score_to_file`, the same forward pass for eval sets of hundreds of thousands of files,
streamed to disk in chunks that an interrupted job resumes from."""
import hashlib
import itertools
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from utils.distributed import DistInfo, gather_objects
from utils.errors import InputError
from utils.io import atomic_open, check_writable, printable_path, read_json
from utils.precision import autocast, is_compiled
from utils.evaluation.score_files import CMScores


@torch.no_grad()
def forward_logits(model: torch.nn.Module, x: torch.Tensor, device: torch.device, precision: str = "fp32",
                   pad_to: int | None = None) -> torch.Tensor:
    """Logits of one batch in eval mode: (n, T) waveforms -> (n, 2) float32 on `device`.

    `pad_to` pads a shorter batch with copies of its first item, whose logits are dropped: a compiled
    model then sees one shape and is not compiled (and its CUDA graph recorded) a second time for a
    last short batch. In eval mode every item is scored on its own, so padding changes no logit.
    """
    n = len(x)
    if pad_to is not None and n < pad_to:
        x = torch.cat([x, x[:1].expand(pad_to - n, *x.shape[1:])])
    with autocast(precision, device):
        _, logits = model(x.to(device, non_blocking=True))
    # A copy: a CUDA graph's output is overwritten by its next replay.
    return logits[:n].to(torch.float32, copy=True)


def score_batches(model: torch.nn.Module, loader: DataLoader, device: torch.device, desc: str = "scoring",
                  precision: str = "fp32", fixed_batch: bool | None = None) -> np.ndarray:
    """The published score, `logits[:, 1]` (bona fide logit), for every item of `loader`, in order.

    With `fixed_batch` (default: when `model` is compiled) a short last batch is padded to the full
    size (see `forward_logits`) when full batches came before it (a set of one short batch is
    compiled once either way). Scores are read back from the
    device once, at the end, so the loop never waits for the GPU.

    Returns:
        (N,) float32.
    """
    model.eval()
    fixed_batch = is_compiled(model) if fixed_batch is None else fixed_batch
    pad_to = loader.batch_size if fixed_batch and len(loader) > 1 else None
    out = []
    with tqdm(total=len(loader.dataset), desc=desc, unit="utt", disable=None, leave=False) as bar:
        for x, _ in loader:
            out.append(forward_logits(model, x, device, precision, pad_to)[:, 1])
            bar.update(len(x))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.float32)


def score_dataset(model: torch.nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
                  num_workers: int = 0, dist_info: DistInfo = DistInfo(), desc: str = "scoring",
                  precision: str = "fp32") -> CMScores:
    """Score every item of `dataset`; under torchrun each rank scores a share and all ranks get the whole.

    Args:
        dataset: items `(waveform (nb_samp,), utt_id)` and `entries` with `utt_id`, `attack` and `key`
            (`data_utils.EvalDataset`).

    Returns:
        The scores with each entry's id, source (attack id) and key, ready for `write_cm_scores`.
    """
    shard = list(range(dist_info.rank, len(dataset), dist_info.world_size))
    loader = DataLoader(Subset(dataset, shard), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())  # global RNG untouched
    scores = np.empty(len(dataset), dtype=np.float32)
    for indices, part in gather_objects((shard, score_batches(model, loader, device, desc, precision)), dist_info):
        scores[indices] = part
    entries = dataset.entries
    return CMScores([e.utt_id for e in entries], [e.attack for e in entries], [e.key for e in entries], scores)


def score_to_file(model: torch.nn.Module, dataset: Dataset, out_path: str | os.PathLike,
                  write_lines: Callable[[Path, Sequence[str], np.ndarray], None], batch_size: int,
                  device: torch.device, num_workers: int = 0, dist_info: DistInfo = DistInfo(),
                  precision: str = "fp32", resume: bool = False, chunk_size: int = 4096,
                  desc: str = "scoring", job_info: dict | None = None) -> np.ndarray | None:
    """Score every item of `dataset` into one file, in chunks an interrupted job resumes from.

    Scores go, `chunk_size` items at a time, to `<out_path>.parts/<start>-<stop>.npz` (ids and scores of
    items start ... stop - 1, each file written atomically), so memory stays flat and a job killed at any
    point loses at most the chunks in flight. Under torchrun the ranks share the chunks still to do
    round-robin (the work folder must be on a file system every rank sees). Then rank 0 reads the chunks
    in order, calls `write_lines(path, ids, scores)` on a path in the work folder, renames that file to
    `out_path` (it appears whole or not at all) and removes the work folder.

    Batches never cross a chunk boundary, so for a given `batch_size` every item is scored in the same
    batch whichever rank scores it and whether or not the job was resumed: the file is the same, byte
    for byte. A resume may change `batch_size` (say, on a smaller GPU: scores then move in the last
    bits), `num_workers` and the number of ranks; a different model, precision, chunk size or number of
    items, or anything else `job_info` records (the caller's input length, trial ids, audio root), is
    refused. The chunks already there are read back before any scoring, so a damaged one stops the job
    at once.

    Args:
        dataset: items `(waveform (nb_samp,), utt_id)`.
        write_lines: writes one corpus's score file format from the ids and (N,) float32 scores, in
            dataset order.
        resume: continue from an existing work folder (none there: start afresh); without it, an
            existing work folder is an error, so that two jobs never write into one by mistake.
        chunk_size: items a chunk; best a multiple of `batch_size`.
        job_info: more of what makes the job (JSON values), checked on resume with the rest.

    Returns:
        (N,) float32 scores in dataset order on rank 0, None on other ranks.

    Raises:
        InputError: on every rank: the work folder exists without `resume`, or was started by a job that
            differs; `out_path` cannot be written; a chunk file is damaged.
    """
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    out_path = Path(out_path)
    parts = out_path.with_name(out_path.name + ".parts")
    n = len(dataset)
    chunks = [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]
    width = len(str(n))

    def chunk_file(i: int) -> Path:
        start, stop = chunks[i]
        return parts / f"{start:0{width}d}-{stop:0{width}d}.npz"

    # Rank 0 alone looks at the work folder (no rank sees another's half-made state) and tells the others.
    error, todo = None, []
    if dist_info.is_main:
        try:
            job = {"items": n, "chunk_size": chunk_size, "precision": precision, "model": _fingerprint(model),
                   **(job_info or {})}
            _open_work_folder(parts, job, resume, out_path)
            todo = [i for i in range(len(chunks)) if not chunk_file(i).is_file()]
            for i in set(range(len(chunks))) - set(todo):
                _read_chunk(chunk_file(i), chunks[i][1] - chunks[i][0])
            if resume and len(todo) < len(chunks):
                print(f"note: resuming {printable_path(parts)}: {len(chunks) - len(todo)} of {len(chunks)} "
                      f"chunks already scored")
        except InputError as e:
            error = str(e)
    error, todo = gather_objects((error, todo), dist_info)[0]
    if error:
        raise InputError(error)

    mine = todo[dist_info.rank::dist_info.world_size]
    per_batch = min(batch_size, chunk_size)
    batches = [list(range(s, min(s + per_batch, chunks[i][1]))) for i in mine
               for s in range(chunks[i][0], chunks[i][1], per_batch)]
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator())  # global RNG untouched
    # A compiled model sees one batch shape; the rule depends on the job alone, not on the rank's share.
    pad_to = per_batch if is_compiled(model) and n > per_batch else None
    model.eval()
    batches_left = iter(loader)
    with tqdm(total=sum(map(len, batches)), desc=desc, unit="utt",
              leave=False, disable=None if dist_info.is_main else True) as bar:  # rank 0's share: its ETA
        for i in mine:
            start, stop = chunks[i]
            ids, scores = [], []
            for x, utt_ids in itertools.islice(batches_left, -(-(stop - start) // per_batch)):  # ceil
                scores.append(forward_logits(model, x, device, precision, pad_to)[:, 1])
                ids.extend(utt_ids)
                bar.update(len(x))
            with atomic_open(chunk_file(i), "wb") as f:
                np.savez(f, ids=np.array(ids, dtype=str), scores=torch.cat(scores).cpu().numpy())
    gather_objects(None, dist_info)  # every rank's chunks are on disk
    if not dist_info.is_main:
        return None

    ids, scores = [], []
    for i, (start, stop) in enumerate(chunks):
        part_ids, part_scores = _read_chunk(chunk_file(i), stop - start)
        ids.extend(part_ids)
        scores.append(part_scores)
    scores = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
    staged = parts / out_path.name
    write_lines(staged, ids, scores)
    os.replace(staged, out_path)
    shutil.rmtree(parts)
    return scores


def _fingerprint(model: torch.nn.Module) -> str:
    """A hash of the model's weights and buffers, so that a resume with other weights is refused."""
    h = hashlib.sha256()
    for t in model.state_dict().values():
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _open_work_folder(parts: Path, job: dict, resume: bool, out_path: Path) -> None:
    """Create `parts` with `job.json`, or with `resume`, check that the folder there is this job's."""
    where = printable_path(parts)
    if parts.exists() and not resume:
        raise InputError(f"{where} holds the chunks of an unfinished scoring job; pass resume to continue it, "
                         f"or remove the folder to start again")
    check_writable(out_path)
    manifest = parts / "job.json"
    if not manifest.exists() and not any(parts.glob("*.npz")):  # new, or killed before job.json was written
        check_writable(parts, folder=True)
        with atomic_open(manifest) as f:
            json.dump(job, f)
        return
    try:
        found = read_json(manifest, "scoring job record", expect=dict)
    except InputError as e:
        raise InputError(f"cannot resume from {where}: {e}; remove the folder to start again") from None
    differ = [k for k in job if found.get(k) != job[k]]
    if differ:
        digests = {"model": "other model weights", "model_config": "another model config",
                   "trials": "other trials (or another order of them)"}
        was = ", ".join(digests.get(k) or f"{k} {found.get(k)!r} (now {job[k]!r})" for k in differ)
        raise InputError(f"cannot resume from {where}: it was started with {was}; "
                         f"remove the folder to start again")


def _read_chunk(path: Path, size: int) -> tuple[list[str], np.ndarray]:
    """The ids and (size,) scores of one chunk file."""
    try:
        with np.load(path) as z:
            ids, scores = z["ids"].tolist(), z["scores"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"chunk file {printable_path(path)} is missing or damaged ({e or type(e).__name__}); "
                         f"remove it and resume to score its items again") from None
    if len(ids) != size or scores.shape != (size,):
        raise InputError(f"chunk file {printable_path(path)} holds {len(ids)} items, not {size}; remove it and "
                         f"resume to score its items again")
    return ids, scores
