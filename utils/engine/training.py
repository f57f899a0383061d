"""The training machinery: run state, resumable checkpoints, the epoch loop, scoring and model
selection on dev, and the weight average (stochastic weight averaging, Izmailov et al., 2018).
`scripts/train.py` builds the pieces and calls `fit`.

After every epoch: dev scores, dev EER and min t-DCF, model selection on dev only, and an atomic
resumable checkpoint. At the end: the weight average (SWA) with recomputed BatchNorm statistics,
scored on eval.
"""
import contextlib
import dataclasses
import math
import os
import random
import re
import socket
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader
from tqdm import tqdm

from utils.config import CLASS_WEIGHTS, Config, config_from_dict, config_to_dict
from utils.distributed import DistInfo, average_across_ranks_, gather_objects
from utils.errors import InputError
from utils.io import atomic_open, atomic_torch_save, atomic_write_json, safe_torch_load
from utils.engine.optimizer import build_optimizer, build_scheduler, scheduler_interval
from utils.evaluation.plots import cm_figures
from utils.precision import Speed, autocast, maybe_compile
from utils.evaluation.score_files import CMScores, compute_metrics, write_cm_scores
from utils.engine.scoring import score_dataset

CHECKPOINT = "checkpoint.pth"
LOCK = "run.lock"  # in the run folder while a run owns it: "<host> <pid>"
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "swa_model", "run_state", "rng", "config", "seed")
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


@dataclass
class Run:
    """Everything one training run works with, built by `build_run`."""
    config: Config
    seed: int
    run_dir: Path
    device: torch.device
    speed: Speed
    dist_info: DistInfo
    splits: dict                 # "train", "dev" (and "eval"): data_utils.Split
    num_workers: int
    train_loader: DataLoader
    model: torch.nn.Module       # the plain module, whose weights are saved
    train_model: torch.nn.Module  # the same weights, wrapped for training (DDP, torch.compile)
    score_model: torch.nn.Module  # the same weights, compiled or not, for dev and eval
    optimizer: torch.optim.Optimizer
    scheduler: object
    swa_model: AveragedModel     # equal-weight running average of the selected epochs
    state: RunState
    writer: object = None        # TensorBoard SummaryWriter on rank 0

    @property
    def steps_per_batch(self) -> bool:
        """Whether the schedule steps after every batch (else after every epoch)."""
        return self.scheduler is not None and scheduler_interval(self.config.optim_config) == "step"

    def say(self, *msg) -> None:
        say(self.dist_info, *msg)


def say(dist_info: DistInfo, *msg) -> None:
    """Print on rank 0 only, above any progress bar."""
    if dist_info.is_main:
        tqdm.write(" ".join(str(m) for m in msg))


# --- building and restoring a run ----------------------------------------------------------------

def build_run(config: Config, seed: int, run_dir: Path, device: torch.device, speed: Speed, dist_info: DistInfo,
              splits: dict, model: torch.nn.Module, sampler, checkpoint: dict | None = None) -> Run:
    """Loader, optimiser, schedule and weight average around `model` (already on `device`, see
    `models.fast.prepare_model`); the state of `checkpoint` when resuming; the training and
    scoring wrappers (DDP with synchronised BatchNorm under torchrun, torch.compile)."""
    num_workers = config.loader_workers()
    train_loader = DataLoader(splits["train"].dataset, batch_size=config.batch_size // dist_info.world_size,
                              sampler=sampler, drop_last=True, num_workers=num_workers,
                              pin_memory=config.pin_memory and device.type == "cuda",
                              persistent_workers=num_workers > 0,
                              # Its own generator: starting the workers then draws nothing from the global
                              # one, so a resumed run's dropout masks are an uninterrupted run's.
                              generator=torch.Generator().manual_seed(seed))
    if len(train_loader) == 0:
        raise InputError(f"the training set ({len(sampler)} items per process) is smaller than one batch")
    optimizer = build_optimizer(model.parameters(), config.optim_config)
    scheduler = build_scheduler(optimizer, config.optim_config, config.num_epochs, len(train_loader))
    swa_model = AveragedModel(model)
    state = RunState()
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(checkpoint["scheduler"])
            swa_model.load_state_dict(checkpoint["swa_model"])
            state = RunState(**checkpoint["run_state"])
            set_rng_states(checkpoint["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise InputError(f"cannot resume from {run_dir / CHECKPOINT}: it does not fit this run "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    train_model = model
    if dist_info.enabled:
        if device.type == "cuda":  # BatchNorm over the whole global batch, as on one GPU
            train_model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # static_graph: the residual blocks' bn1 never gets a gradient (the published forward discards it).
        train_model = DistributedDataParallel(train_model, device_ids=[device.index] if device.type == "cuda" else None,
                                              static_graph=True)
    return Run(config, seed, run_dir, device, speed, dist_info, splits, num_workers, train_loader, model,
               maybe_compile(train_model, speed), maybe_compile(model, speed), optimizer, scheduler, swa_model, state)


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


def save_checkpoint(run: Run) -> None:
    """The whole run in `checkpoint.pth`, written atomically: enough to resume it bit for bit."""
    atomic_torch_save({
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "swa_model": run.swa_model.state_dict(), "run_state": vars(run.state), "rng": rng_states(),
        "config": config_to_dict(run.config), "seed": run.seed,
    }, run.run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path) -> tuple[dict, Config]:
    """A run's checkpoint (safely: weights_only) and its config."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise InputError(f"--resume: no {CHECKPOINT} in {run_dir} to continue from")
    try:
        checkpoint = safe_torch_load(path, what="run checkpoint")
    except InputError as e:
        raise InputError(f"cannot resume: {e}") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise InputError(f"cannot resume from {path}: not this project's run checkpoint (no {', '.join(missing)})")
    try:
        config = config_from_dict(checkpoint["config"])
    except InputError as e:
        raise InputError(f"cannot resume from {path}: its config is invalid: {e}") from None
    problem = _checkpoint_problem(checkpoint, config)
    if problem:
        raise InputError(f"cannot resume from {path}: {problem}")
    return checkpoint, config


def _checkpoint_problem(checkpoint: dict, config: Config) -> str | None:
    """What makes a checkpoint's seed or run state unusable (a forged or damaged file), or None. The weights
    and optimiser state are checked as `build_run` loads them."""
    def integer(value) -> bool:
        return type(value) is int  # not a bool, not a float, not text

    def number(value) -> bool:
        return type(value) in (int, float) and not math.isnan(value)

    state = checkpoint["run_state"]
    if not integer(checkpoint["seed"]) or not 0 <= checkpoint["seed"] < 2 ** 32:
        return f"seed is {checkpoint['seed']!r:.40}, not an integer from 0 to 2**32 - 1"
    if not isinstance(state, dict) or set(state) != {f.name for f in dataclasses.fields(RunState)}:
        return "run_state is not this project's (epoch, best_dev_eer, best_epoch, swa_epochs, history)"
    epoch, best_epoch = state["epoch"], state["best_epoch"]
    if not integer(epoch) or not 0 <= epoch <= config.num_epochs:
        return f"run_state.epoch is {epoch!r:.40}, not a count of epochs from 0 to num_epochs {config.num_epochs}"
    if not integer(best_epoch) or not -1 <= best_epoch < epoch:
        return f"run_state.best_epoch is {best_epoch!r:.40}, not an epoch before {epoch}"
    if not number(state["best_dev_eer"]):
        return f"run_state.best_dev_eer is {state['best_dev_eer']!r:.40}, not a number"
    if not isinstance(state["swa_epochs"], list) or not all(integer(e) and 0 <= e < epoch for e in state["swa_epochs"]):
        return f"run_state.swa_epochs is not a list of epochs before {epoch}"
    history = state["history"]
    if not isinstance(history, list) or len(history) != epoch or not all(isinstance(h, dict) for h in history):
        return f"run_state.history does not hold one record per completed epoch ({epoch})"
    return None


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, dist_info: DistInfo = DistInfo()):
    """Own `run_dir` while the run lasts, so that a second run into it stops at once.

    Rank 0 creates `run.lock` (host and process id) and removes it on exit; every rank stops if it
    cannot. A lock left by a process that is gone (killed on this host) is reported and taken over.
    """
    problem = _take_lock(run_dir) if dist_info.is_main else None
    problems = [p for p in gather_objects(problem, dist_info) if p is not None]
    if problems:
        raise InputError(problems[0])
    try:
        yield
    finally:
        if dist_info.is_main:
            with contextlib.suppress(OSError):
                (run_dir / LOCK).unlink()


def _take_lock(run_dir: Path) -> str | None:
    """Create the lock file; None on success, else why not."""
    path, me = run_dir / LOCK, f"{socket.gethostname()} {os.getpid()}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _lock_owner(path)
                if owner is None:
                    return (f"{run_dir} holds a {LOCK} that is not a run's (a link, or not one \"<host> <pid>\" "
                            f"line); if no run is going on, remove {path}")
                host, pid = owner
                if host != socket.gethostname():
                    return (f"{run_dir} is in use by another run (process {host} {pid}); wait for it to end or "
                            f"choose another --output_dir (if no run is going on, remove {path})")
                if _alive(pid):
                    return (f"{run_dir} is in use by another run (process {host} {pid}); wait for "
                            f"it to end or choose another --output_dir (a run left behind by a killed sweep stops "
                            f"with `kill {pid}`)")
                tqdm.write(f"note: {path} was left by process {pid}, which is gone; taking the run folder over")
                path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me + "\n")
            return None
    except OSError as e:
        return f"cannot write to the run folder {run_dir}: {e.strerror or e}"
    return f"cannot take the lock {path}"


def _lock_owner(path: Path) -> tuple[str, int] | None:
    """The (host, process id) a lock file names, or None for a lock that is not one short "<host> <pid>"
    line. A link is never followed (its target's contents are never shown) and at most 256 bytes are read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # a link (ELOOP), gone, unreadable
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)
    match = re.fullmatch(rb"([A-Za-z0-9._-]{1,253}) ([0-9]{1,10})\n?", data)
    return (match.group(1).decode(), int(match.group(2))) if match else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


# --- one epoch -----------------------------------------------------------------------------------

def training_step(train_model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  weight: torch.Tensor, precision: str, freq_aug: bool = False) -> torch.Tensor:
    """One step of the published recipe: forward (bf16 autocast where `precision` says), weighted cross-entropy
    on the model's output, backward, optimiser step. Returns the loss, on the device (reading it waits for it).

    The cross-entropy takes the output as logits, as the published training scripts do, whatever it is (RawNet2's
    published output is already log-probabilities: the published code normalises them a second time)."""
    with autocast(precision, x.device):
        _, output = train_model(x, freq_aug=freq_aug)
    loss = F.cross_entropy(output.float(), y, weight=weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_one_epoch(run: Run, epoch: int) -> tuple[float, float]:
    """One pass over the training data; returns the mean loss (over all ranks) and samples/s. Stops on a
    NaN or inf loss, naming its step (losses are read from the device every LOSS_READ_STEPS steps, and
    at the end)."""
    device, dist_info, loader = run.device, run.dist_info, run.train_loader
    run.train_model.train()
    weight = torch.tensor(CLASS_WEIGHTS, device=device)
    read_every = LOSS_READ_STEPS.get(device.type, 1)
    pending = []  # losses of the last steps, on the device, not read yet
    total_loss, total_items, t0 = 0.0, 0, time.time()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=None if dist_info.is_main else True, leave=False)
    for step, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        pending.append(training_step(run.train_model, run.optimizer, x, y, weight, run.speed.precision,
                                     run.config.freq_aug))
        if run.steps_per_batch:
            run.scheduler.step()
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
    batch_size = run.config.scoring_batch_size()
    cm = score_dataset(model, run.splits[split].dataset, batch_size, run.device, run.num_workers, run.dist_info,
                       desc, run.speed.precision)
    if run.dist_info.is_main and score_file is not None:
        write_cm_scores(run.run_dir / score_file, cm)
    return cm, compute_metrics(cm, run.splits[split].asv)


# --- the whole run -------------------------------------------------------------------------------

def fit(run: Run) -> None:
    """Train from `run.state.epoch` to the last epoch, then average the selected epochs' weights."""
    config, state, dist_info = run.config, run.state, run.dist_info
    if dist_info.is_main:
        (run.run_dir / "weights").mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.run_dir / "config.json", config_to_dict(config))
        from torch.utils.tensorboard import SummaryWriter
        # purge_step drops events an interrupted run wrote after its last checkpoint.
        run.writer = SummaryWriter(log_dir=str(run.run_dir), purge_step=state.epoch)
    figures = True
    for epoch in range(state.epoch, config.num_epochs):
        t0 = time.time()
        run.train_loader.sampler.set_epoch(epoch)
        lr = run.optimizer.param_groups[0]["lr"]
        loss, rate = train_one_epoch(run, epoch)
        if run.scheduler is not None and not run.steps_per_batch:
            run.scheduler.step()
        dev_cm, dev = score_and_measure(run, run.score_model, "dev", "dev_scores.txt", "dev")
        if dev["eer_percent"] <= state.best_dev_eer:  # ties count, as in the published script
            state.best_dev_eer, state.best_epoch = dev["eer_percent"], epoch
            on_new_best(run, epoch, dev)
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch, "loss": loss, "lr": lr, "dev_eer": dev["eer_percent"],
                              "dev_tdcf": dev["min_tdcf"], "seconds": time.time() - t0})
        if dist_info.is_main:
            save_checkpoint(run)
            write_metric_log(run.run_dir / "metric_log.txt", state.history)
            log_epoch(run.writer, state.history[-1], state)
            if figures and not log_dev_figures(run.writer, dev_cm, epoch):
                figures = False
                run.say("note: matplotlib is not installed: no DET curve or histograms in TensorBoard")
            run.say(f"epoch {epoch}: loss {loss:.4f} ({rate:.0f} samples/s)  dev EER {dev['eer_percent']:.3f} %  "
                    f"dev min t-DCF {_fmt(dev['min_tdcf'])}  best {state.best_dev_eer:.3f} % (epoch {state.best_epoch})")
    if state.swa_epochs:
        finish_swa(run)
    if run.writer is not None:
        run.writer.close()


def on_new_best(run: Run, epoch: int, dev: dict) -> None:
    """Dev EER improved: save the weights, score eval if asked, and add them to the average if good enough."""
    if run.dist_info.is_main:
        weights = run.model.state_dict()
        atomic_torch_save(weights, run.run_dir / "weights" / f"epoch_{epoch}_{dev['eer_percent']:03.3f}.pth")
        atomic_torch_save(weights, run.run_dir / "weights" / "best.pth")
    if run.config.eval_all_best:
        _, ev = score_and_measure(run, run.score_model, "eval", run.config.eval_output, "eval")
        run.say(f"  eval with the best dev model: EER {ev['eer_percent']:.3f} %  min t-DCF {_fmt(ev['min_tdcf'])}")
        if run.writer is not None:
            run.writer.add_scalar("eval/eer_percent", ev["eer_percent"], epoch)
            if ev["min_tdcf"] is not None:
                run.writer.add_scalar("eval/min_tdcf", ev["min_tdcf"], epoch)
    if dev["eer_percent"] <= run.config.swa_max_dev_eer:
        run.swa_model.update_parameters(run.model)
        run.state.swa_epochs.append(epoch)


def finish_swa(run: Run) -> None:
    """Recompute BatchNorm statistics of the averaged weights over the training data, score eval, save."""
    run.say(f"weight averaging over epochs {run.state.swa_epochs}: recomputing BatchNorm statistics")
    run.train_loader.sampler.set_epoch(run.config.num_epochs)
    update_bn(run.train_loader, run.swa_model, device=run.device)
    averaged = run.swa_model.module
    # Each rank saw its own share of the data: pool the statistics so every rank holds the same model.
    average_across_ranks_([t for m in averaged.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                           for t in (m.running_mean, m.running_var)], run.dist_info)
    if run.dist_info.is_main:
        atomic_torch_save(averaged.state_dict(), run.run_dir / "weights" / "swa.pth")
    _, ev = score_and_measure(run, averaged, "eval", "eval_scores_swa.txt", "eval (SWA)")
    run.say(f"eval with the averaged weights: EER {ev['eer_percent']:.3f} %  min t-DCF {_fmt(ev['min_tdcf'])}")
    if run.writer is not None:
        run.writer.add_scalar("eval/swa_eer_percent", ev["eer_percent"], run.config.num_epochs)


# --- logs ----------------------------------------------------------------------------------------

def write_metric_log(path: Path, history: list[dict]) -> None:
    """Rewritten whole from the checkpointed history, so a restart never leaves a duplicate or a gap."""
    with atomic_open(path) as f:
        f.write("epoch\tloss\tlr\tdev_eer_percent\tdev_min_tdcf\tseconds\n")
        for h in history:
            tdcf = "-" if h["dev_tdcf"] is None else f"{h['dev_tdcf']:.6g}"
            f.write(f"{h['epoch']}\t{h['loss']:.6f}\t{h['lr']:.6g}\t{h['dev_eer']:.6f}\t{tdcf}\t{h['seconds']:.1f}\n")


def log_epoch(writer, h: dict, state: RunState) -> None:
    epoch = h["epoch"]
    writer.add_scalar("train/loss", h["loss"], epoch)
    writer.add_scalar("train/lr", h["lr"], epoch)
    writer.add_scalar("dev/eer_percent", h["dev_eer"], epoch)
    writer.add_scalar("dev/best_eer_percent", state.best_dev_eer, epoch)
    if h["dev_tdcf"] is not None:
        writer.add_scalar("dev/min_tdcf", h["dev_tdcf"], epoch)
    writer.flush()


def log_dev_figures(writer, cm: CMScores, epoch: int) -> bool:
    """DET curve and score histograms of dev in TensorBoard; False (and nothing logged) without matplotlib."""
    try:
        for name, fig in cm_figures(cm).items():
            writer.add_figure(f"dev/{name}", fig, epoch)
    except InputError:
        return False
    return True


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"
