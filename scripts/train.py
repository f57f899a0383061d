"""Train AASIST with the published recipe (spec section 8) on ASVspoof 2019 LA, or the demo corpus.

    python scripts/train.py --config config/config.json
    python scripts/train.py --config config/config.json --resume --output_dir exp_result/LA_config_ep100_bs24
    torchrun --nproc_per_node=4 scripts/train.py --config config/config.json

After every epoch: dev scores, dev EER and min t-DCF (with the dev ASV scores), model selection on
dev only, and an atomic resumable checkpoint. At the end: the weight average (SWA) with
recomputed BatchNorm statistics, scored on eval.
"""
import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.optim.swa_utils import AveragedModel, update_bn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

from data_utils import EvalDataset, TrainDataset, TrainSampler, check_audio_exists, read_protocol, split_paths  # noqa: E402
from models import AASIST  # noqa: E402
from models.loading import resolve_device  # noqa: E402
from utils.config import Config, config_from_dict, config_to_dict, load_config  # noqa: E402
from utils.distributed import DistInfo, average_across_ranks_, cleanup, init_distributed  # noqa: E402
from utils.errors import InputError  # noqa: E402
from utils.io import atomic_open, atomic_torch_save  # noqa: E402
from utils.precision import (autocast, maybe_compile, resolve_precision, set_cuda_flags,  # noqa: E402
                             use_channels_last)
from utils.optimizer import build_optimizer, build_scheduler, scheduler_interval  # noqa: E402
from utils.plots import cm_figures  # noqa: E402  (matplotlib: lazily, optional)
from utils.scores import ASVScores, CMScores, compute_metrics, read_asv_scores, write_cm_scores  # noqa: E402
from utils.scoring import score_dataset  # noqa: E402

CLASS_WEIGHTS = [0.1, 0.9]  # spoof, bona fide: the published weighted cross-entropy
CHECKPOINT = "checkpoint.pth"
# Training steps between reads of the loss from the device. A read makes the CPU wait for the GPU,
# which then idles while the CPU prepares the next step; on a CPU there is nothing to overlap.
LOSS_READ_STEPS = {"cuda": 32, "cpu": 1}


@dataclass
class RunState:
    """What survives a restart, besides the model, optimiser, scheduler and averaged weights."""
    epoch: int = 0                      # epochs completed
    best_dev_eer: float = math.inf
    best_epoch: int = -1
    swa_epochs: list = field(default_factory=list)
    history: list = field(default_factory=list)  # one dict per completed epoch (metric_log.txt)


# --- setup ---------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="JSON config (required unless --resume, which reuses the run's own)")
    p.add_argument("--seed", type=int, default=1234, help="seed of every random draw (default 1234)")
    p.add_argument("--output_dir", type=Path, default=None,
                   help="run folder (default exp_result/LA_<config name>_ep<epochs>_bs<batch>[_<comment>])")
    p.add_argument("--comment", default=None, help="suffix for the default run folder name")
    p.add_argument("--resume", action="store_true", help=f"continue the run in --output_dir from its {CHECKPOINT}")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    args = p.parse_args(argv)
    if args.config is None and not args.resume:
        p.error("--config is required (unless --resume)")
    if args.resume and args.output_dir is None and args.config is None:
        p.error("--resume needs --output_dir (or the --config and --comment that named the run)")
    return args


def default_output_dir(config_path: Path, config: Config, comment: str | None) -> Path:
    name = f"LA_{config_path.stem}_ep{config.num_epochs}_bs{config.batch_size}"
    return REPO_ROOT / "exp_result" / (f"{name}_{comment}" if comment else name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict:
    """The global generators' states, as tensors and plain values (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                   "cached_gaussian": cached}
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def say(dist_info: DistInfo, *msg) -> None:
    if dist_info.is_main:
        tqdm.write(" ".join(str(m) for m in msg))


@dataclass
class Split:
    """One set's dataset and (dev/eval) the ASV scores for its t-DCF."""
    dataset: EvalDataset | TrainDataset
    asv: ASVScores | None = None


def load_splits(config: Config, need_eval: bool, dist_info: DistInfo) -> dict[str, Split]:
    """Read the protocols, check that every audio file is there (before any long job), load ASV scores."""
    root = Path(config.database_path)
    nb_samp = config.model_config.nb_samp
    splits = {}
    for name in ("train", "dev") + (("eval",) if need_eval else ()):
        paths = split_paths(root, name)
        entries = read_protocol(paths.protocol)
        check_audio_exists(entries, paths.audio_dir)
        if name == "train":
            splits[name] = Split(TrainDataset(entries, paths.audio_dir, nb_samp))
            continue
        asv_path = root / (config.dev_asv_score_path if name == "dev" else config.asv_score_path)
        asv = read_asv_scores(asv_path) if asv_path.is_file() else None
        if asv is None:
            say(dist_info, f"note: no ASV scores at {asv_path}: {name} min t-DCF is not computed, EER only")
        splits[name] = Split(EvalDataset(entries, paths.audio_dir, nb_samp), asv)
    return splits


@dataclass
class Run:
    """What every step of a run needs to know, in one place."""
    config: Config
    device: torch.device
    dist_info: DistInfo
    splits: dict[str, Split]
    run_dir: Path
    num_workers: int
    precision: str
    writer: object = None  # TensorBoard SummaryWriter on rank 0


# --- one epoch -----------------------------------------------------------------------------

def train_one_epoch(run: Run, model, loader, optimizer, scheduler, step_scheduler: bool,
                    epoch: int) -> tuple[float, float]:
    """One pass over the training data; returns the mean loss (over all ranks) and samples/s. Stops on a
    NaN or inf loss, naming its step (losses are read from the device every LOSS_READ_STEPS steps, and
    at the end)."""
    device, dist_info = run.device, run.dist_info
    model.train()
    weight = torch.tensor(CLASS_WEIGHTS, device=device)
    read_every = LOSS_READ_STEPS.get(device.type, 1)
    pending = []  # losses of the last steps, on the device, not read yet
    total_loss, total_items, t0 = 0.0, 0, time.time()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=None if dist_info.is_main else True, leave=False)
    for step, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(run.precision, device):
            _, logits = model(x, freq_aug=run.config.freq_aug)
        loss = F.cross_entropy(logits.float(), y, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step_scheduler:
            scheduler.step()
        pending.append(loss.detach())
        if len(pending) == read_every or step == len(loader) - 1:
            losses = torch.stack(pending)
            # Every rank reads at the same steps: averaged, all ranks see a NaN and stop together
            # (a rank that stopped alone would leave the others waiting in the gradient all-reduce).
            average_across_ranks_([losses], dist_info)
            for read_step, value in enumerate(losses.tolist(), start=step + 1 - len(pending)):
                if not math.isfinite(value):
                    raise FloatingPointError(f"loss is {value} at epoch {epoch}, step {read_step}; "
                                             "stopping (the last good checkpoint is kept)")
                total_loss += value * len(x)  # every batch is full (drop_last)
            total_items += len(pending) * len(x)
            pending.clear()
            rate = total_items * dist_info.world_size / (time.time() - t0)
            bar.set_postfix(loss=f"{value:.4f}", samples_per_s=f"{rate:.1f}")
    rate = total_items * dist_info.world_size / (time.time() - t0)
    if run.writer is not None:
        run.writer.add_scalar("train/samples_per_s", rate, epoch)
    return total_loss / max(total_items, 1), rate


def score_and_measure(run: Run, model, split: str, score_file: str | None, desc: str) -> tuple[CMScores, dict]:
    """Score a set (all ranks share the work); rank 0 writes the score file. Returns the scores and metrics."""
    batch_size = run.config.eval_batch_size or run.config.batch_size
    cm = score_dataset(model, run.splits[split].dataset, batch_size, run.device, run.num_workers, run.dist_info,
                       desc, run.precision)
    if run.dist_info.is_main and score_file is not None:
        write_cm_scores(run.run_dir / score_file, cm)
    return cm, compute_metrics(cm, run.splits[split].asv)


def log_dev_figures(writer, cm: CMScores, epoch: int) -> bool:
    """DET curve and score histograms of dev in TensorBoard; False (and nothing logged) without matplotlib."""
    try:
        for name, fig in cm_figures(cm).items():
            writer.add_figure(f"dev/{name}", fig, epoch)
    except InputError:
        return False
    return True


# --- checkpoints and logs ------------------------------------------------------------------

def save_checkpoint(path: Path, model, optimizer, scheduler, swa_model, state: RunState, config: Config,
                    seed: int) -> None:
    atomic_torch_save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "swa_model": swa_model.state_dict() if swa_model is not None else None,
        "run_state": vars(state), "rng": rng_states(), "config": config_to_dict(config), "seed": seed,
    }, path)


def write_metric_log(path: Path, history: list[dict]) -> None:
    """Rewritten whole from the checkpointed history, so a restart never leaves a duplicate or a gap."""
    def fmt(v):
        return "-" if v is None else f"{v:.6g}"
    with atomic_open(path) as f:
        f.write("epoch\tloss\tlr\tdev_eer_percent\tdev_min_tdcf\tseconds\n")
        for h in history:
            f.write(f"{h['epoch']}\t{h['loss']:.6f}\t{h['lr']:.6g}\t{h['dev_eer']:.6f}\t"
                    f"{fmt(h['dev_tdcf'])}\t{h['seconds']:.1f}\n")


def open_tensorboard(run_dir: Path, purge_step: int):
    from torch.utils.tensorboard import SummaryWriter
    # purge_step drops events an interrupted run wrote after its last checkpoint.
    return SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)


# --- main ----------------------------------------------------------------------------------

def prepare_run(args, dist_info: DistInfo) -> tuple[Config, Path, int, dict | None]:
    """Resolve the config, run folder and seed; load the checkpoint when resuming."""
    config = load_config(args.config) if args.config is not None else None
    run_dir = args.output_dir or default_output_dir(args.config, config, args.comment)
    checkpoint_path = run_dir / CHECKPOINT
    if args.resume:
        if not checkpoint_path.is_file():
            raise InputError(f"--resume: no {CHECKPOINT} in {run_dir} to continue from")
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        saved = config_from_dict(ckpt["config"])
        if config is not None and config != saved:
            raise InputError(f"--resume: {args.config} differs from the config of the run in {run_dir}; "
                             "resume without --config to use the run's own")
        return saved, run_dir, ckpt["seed"], ckpt
    if checkpoint_path.exists():
        raise InputError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --output_dir")
    return config, run_dir, args.seed, None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        device_type = resolve_device(args.device).type
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    dist_info = init_distributed(device_type)
    try:
        train(args, device_type, dist_info)
    except (InputError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup(dist_info)
    return 0


def train(args, device_type: str, dist_info: DistInfo) -> None:
    config, run_dir, seed, ckpt = prepare_run(args, dist_info)
    device = torch.device(device_type, dist_info.local_rank) if device_type == "cuda" else torch.device("cpu")
    if device_type == "cuda":
        set_cuda_flags(config.cudnn_deterministic_toggle, config.cudnn_benchmark_toggle)
    if config.batch_size % dist_info.world_size:
        raise InputError(f"batch_size {config.batch_size} does not divide over {dist_info.world_size} processes")
    seed_everything(seed)

    need_eval = config.eval_all_best or config.swa_max_dev_eer > 0
    splits = load_splits(config, need_eval, dist_info)
    num_workers = config.loader_workers()
    run = Run(config, device, dist_info, splits, run_dir, num_workers, resolve_precision(config.precision, device))
    sampler = TrainSampler(len(splits["train"].dataset), seed, dist_info.rank, dist_info.world_size)
    train_loader = DataLoader(splits["train"].dataset, batch_size=config.batch_size // dist_info.world_size,
                              sampler=sampler, drop_last=True, num_workers=num_workers,
                              pin_memory=config.pin_memory and device_type == "cuda",
                              persistent_workers=num_workers > 0)
    if len(train_loader) == 0:
        raise InputError(f"the training set ({len(sampler)} items per process) is smaller than one batch")

    model = use_channels_last(AASIST(config.model_config).to(device), config.channels_last, device, run.precision)
    optimizer = build_optimizer(model.parameters(), config.optim_config)
    scheduler = build_scheduler(optimizer, config.optim_config, config.num_epochs, len(train_loader))
    step_scheduler = scheduler is not None and scheduler_interval(config.optim_config) == "step"
    swa_model = AveragedModel(model)  # equal-weight running average of the selected epochs
    state = RunState()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        swa_model.load_state_dict(ckpt["swa_model"])
        state = RunState(**ckpt["run_state"])
        set_rng_states(ckpt["rng"])
        say(dist_info, f"resuming {run_dir} after epoch {state.epoch}")
    train_model = model
    if dist_info.enabled:
        if device_type == "cuda":  # BatchNorm over the whole global batch, as on one GPU
            train_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # static_graph: the residual blocks' bn1 never gets a gradient (the published forward discards it).
        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device_type == "cuda" else None,
                                              static_graph=True)
    train_model = maybe_compile(train_model, config.compile, device, config.cuda_graphs, dist_info.enabled)
    score_model = maybe_compile(model, config.compile, device, config.cuda_graphs, dist_info.enabled)

    if dist_info.is_main:
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        with atomic_open(run_dir / "config.json") as f:
            json.dump(config_to_dict(config), f, indent=2)
        run.writer = open_tensorboard(run_dir, purge_step=state.epoch)
        say(dist_info, f"run folder: {run_dir}  device: {device}  precision: {run.precision}  "
                       f"processes: {dist_info.world_size}  "
                       f"train/dev: {len(splits['train'].dataset)}/{len(splits['dev'].dataset)} utterances")

    figures = True
    for epoch in range(state.epoch, config.num_epochs):
        t0 = time.time()
        sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        loss, rate = train_one_epoch(run, train_model, train_loader, optimizer, scheduler, step_scheduler, epoch)
        if scheduler is not None and not step_scheduler:
            scheduler.step()
        dev_cm, dev = score_and_measure(run, score_model, "dev", "dev_scores.txt", "dev")
        if dev["eer_percent"] <= state.best_dev_eer:  # ties count, as in the published script
            state.best_dev_eer, state.best_epoch = dev["eer_percent"], epoch
            on_new_best(run, model, score_model, swa_model, epoch, dev, state)
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch, "loss": loss, "lr": lr, "dev_eer": dev["eer_percent"],
                              "dev_tdcf": dev["min_tdcf"], "seconds": time.time() - t0})
        if dist_info.is_main:
            save_checkpoint(run_dir / CHECKPOINT, model, optimizer, scheduler, swa_model, state, config, seed)
            write_metric_log(run_dir / "metric_log.txt", state.history)
            log_epoch(run.writer, state.history[-1], state)
            if figures and not log_dev_figures(run.writer, dev_cm, epoch):
                figures = False
                say(dist_info, "note: matplotlib is not installed: no DET curve or histograms in TensorBoard")
            say(dist_info, f"epoch {epoch}: loss {loss:.4f} ({rate:.0f} samples/s)  "
                           f"dev EER {dev['eer_percent']:.3f} %  dev min t-DCF {_fmt(dev['min_tdcf'])}  "
                           f"best {state.best_dev_eer:.3f} % (epoch {state.best_epoch})")

    if state.swa_epochs:
        finish_swa(run, swa_model, train_loader, state)
    if run.writer is not None:
        run.writer.close()
    say(dist_info, f"done: best dev EER {state.best_dev_eer:.3f} % at epoch {state.best_epoch}; weights in {run_dir / 'weights'}")


def on_new_best(run: Run, model, score_model, swa_model, epoch: int, dev: dict, state: RunState) -> None:
    """Dev EER improved: save the weights, score eval if asked, and add them to the average if good enough."""
    if run.dist_info.is_main:
        weights = model.state_dict()
        atomic_torch_save(weights, run.run_dir / "weights" / f"epoch_{epoch}_{dev['eer_percent']:03.3f}.pth")
        atomic_torch_save(weights, run.run_dir / "weights" / "best.pth")
    if run.config.eval_all_best:
        _, ev = score_and_measure(run, score_model, "eval", run.config.eval_output, "eval")
        say(run.dist_info, f"  eval with the best dev model: EER {ev['eer_percent']:.3f} %  min t-DCF {_fmt(ev['min_tdcf'])}")
        if run.writer is not None:
            run.writer.add_scalar("eval/eer_percent", ev["eer_percent"], epoch)
            if ev["min_tdcf"] is not None:
                run.writer.add_scalar("eval/min_tdcf", ev["min_tdcf"], epoch)
    if dev["eer_percent"] <= run.config.swa_max_dev_eer:
        swa_model.update_parameters(model)
        state.swa_epochs.append(epoch)


def finish_swa(run: Run, swa_model, train_loader, state: RunState) -> None:
    """Recompute BatchNorm statistics of the averaged weights over the training data, score eval, save."""
    say(run.dist_info, f"weight averaging over epochs {state.swa_epochs}: recomputing BatchNorm statistics")
    train_loader.sampler.set_epoch(run.config.num_epochs)
    update_bn(train_loader, swa_model, device=run.device)
    averaged = swa_model.module
    # Each rank saw its own share of the data: pool the statistics so every rank holds the same model.
    average_across_ranks_([t for m in averaged.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                           for t in (m.running_mean, m.running_var)], run.dist_info)
    if run.dist_info.is_main:
        atomic_torch_save(averaged.state_dict(), run.run_dir / "weights" / "swa.pth")
    _, ev = score_and_measure(run, averaged, "eval", "eval_scores_swa.txt", "eval (SWA)")
    say(run.dist_info, f"eval with the averaged weights: EER {ev['eer_percent']:.3f} %  min t-DCF {_fmt(ev['min_tdcf'])}")
    if run.writer is not None:
        run.writer.add_scalar("eval/swa_eer_percent", ev["eer_percent"], run.config.num_epochs)


def log_epoch(writer, h: dict, state: RunState) -> None:
    epoch = h["epoch"]
    writer.add_scalar("train/loss", h["loss"], epoch)
    writer.add_scalar("train/lr", h["lr"], epoch)
    writer.add_scalar("dev/eer_percent", h["dev_eer"], epoch)
    writer.add_scalar("dev/best_eer_percent", state.best_dev_eer, epoch)
    if h["dev_tdcf"] is not None:
        writer.add_scalar("dev/min_tdcf", h["dev_tdcf"], epoch)
    writer.flush()


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


if __name__ == "__main__":
    sys.exit(main())
