"""Score with a model: the one loop behind training (dev and eval each epoch), evaluate.py and
`models.score`."""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from utils.distributed import DistInfo, gather_objects
from utils.precision import autocast, is_compiled
from utils.score_files import CMScores


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
