"""Score a set with a model: the one routine shared by training (dev/eval each epoch) and evaluate.py."""
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from data_utils import EvalDataset
from utils.distributed import DistInfo, gather_objects
from utils.precision import autocast, is_compiled
from utils.scores import CMScores


@torch.no_grad()
def score_batches(model: torch.nn.Module, loader: DataLoader, device: torch.device, desc: str = "scoring",
                  precision: str = "fp32", fixed_batch: bool | None = None) -> np.ndarray:
    """The published score, `logits[:, 1]` (bona fide logit), for every item of `loader`, in order.

    `fixed_batch` (default: when `model` is compiled) pads a short last batch after full ones to the
    full batch size with copies of its first item, whose scores are dropped: a compiled model then
    sees one shape and is not compiled, and its CUDA graph recorded, a second time for the last
    batch. In eval mode every item is scored on its own, so the padding does not change the other
    scores. (A set of one short batch is not padded: it is compiled once either way.)

    Returns:
        (N,) float32.
    """
    if fixed_batch is None:
        fixed_batch = is_compiled(model)
    model.eval()
    out = []
    with tqdm(total=len(loader.dataset), desc=desc, unit="utt", disable=None, leave=False) as bar:
        for x, _ in loader:
            n = len(x)
            if fixed_batch and n < loader.batch_size and len(loader) > 1:
                x = torch.cat([x, x[:1].expand(loader.batch_size - n, *x.shape[1:])])
            with autocast(precision, device):
                _, logits = model(x.to(device, non_blocking=True))
            # Copied now (a CUDA graph's output is overwritten by its next replay) and read back once
            # at the end, so that the loop never waits for the GPU.
            out.append(logits[:n, 1].to(torch.float32, copy=True))
            bar.update(n)
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.float32)


def score_dataset(model: torch.nn.Module, dataset: EvalDataset, batch_size: int, device: torch.device,
                  num_workers: int = 0, dist_info: DistInfo = DistInfo(), desc: str = "scoring",
                  precision: str = "fp32") -> CMScores:
    """Score every entry of `dataset`; under torchrun each rank scores a share and all ranks get the whole.

    Returns the scores with each entry's id, source (attack id) and key, ready for `write_cm_scores`.
    """
    shard = list(range(dist_info.rank, len(dataset), dist_info.world_size))
    loader = DataLoader(Subset(dataset, shard), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    scores = np.empty(len(dataset), dtype=np.float32)
    for indices, part in gather_objects((shard, score_batches(model, loader, device, desc, precision)), dist_info):
        scores[indices] = part
    entries = dataset.entries
    return CMScores([e.utt_id for e in entries], [e.attack for e in entries], [e.key for e in entries], scores)
