"""Timing for `scripts/benchmark.py`: a training step and a scoring step of a model, its peak memory,
and the item rate of a loader worker, each a median of repeats after warm-up, device synchronised."""
import collections
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from utils.config import CLASS_WEIGHTS, OptimConfig
from utils.engine.optimizer import build_optimizer
from utils.precision import Speed, autocast, maybe_compile
from utils.engine.training import training_step


def timed(fn, device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs after `warmup` runs, device synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_step_of(model: torch.nn.Module, run_model: torch.nn.Module, speed: Speed, device: torch.device,
                  optim_config: OptimConfig):
    """`step(x, y)`: the step training runs (`utils.engine.training.training_step`) on `model` (forward through
    `run_model`, its compiled form or itself) with the config's optimiser."""
    optimizer = build_optimizer(model.parameters(), optim_config)
    weight = torch.tensor(CLASS_WEIGHTS, device=device)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        model.train()
        training_step(run_model, optimizer, x, y, weight, speed.precision)
    return step


def measure_model(model: torch.nn.Module, speed: Speed, device: torch.device, optim_config: OptimConfig,
                  batch_size: int, eval_batch_size: int, warmup: int, repeats: int, profile: Path | None = None,
                  name: str = "") -> dict:
    """Training and scoring throughput of `model` (on `device`, see `models.fast.prepare_model`) run
    with `speed`, on seeded random inputs of the model's `nb_samp` samples.

    Returns:
        {"logits": the scoring batch's logits before any training step (to compare modes),
         "train_samples_per_s", "score_samples_per_s", "peak_train_memory_gib", "peak_score_memory_gib"
         (None on a CPU), "first_train_step_s", "first_score_step_s" (the first call of each, compilation
         and CUDA graph capture included: what a user waits for at every start)}.
    """
    gen = torch.Generator(device="cpu").manual_seed(1)
    x_train = torch.randn(batch_size, model.nb_samp, generator=gen).to(device)
    y_train = torch.randint(0, 2, (batch_size,), generator=gen).to(device)
    x_eval = torch.randn(eval_batch_size, model.nb_samp, generator=gen).to(device)
    run_model = maybe_compile(model, speed)
    cuda = device.type == "cuda"
    step = train_step_of(model, run_model, speed, device, optim_config)

    def train_step():
        step(x_train, y_train)

    @torch.no_grad()
    def score_step():
        model.eval()
        with autocast(speed.precision, device):
            return run_model(x_eval)[1].float().clone()  # a CUDA graph's output is overwritten by the next replay

    def first_call(fn) -> tuple[float, object]:
        t0 = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0, out

    # Outputs first, before training moves the weights: the same weights and input in every mode.
    first_score, logits = first_call(score_step)
    row = {"logits": logits, "first_score_step_s": first_score}
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t_eval = timed(score_step, device, warmup, repeats)
    peak_eval = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    row["first_train_step_s"] = first_call(train_step)[0]
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t_train = timed(train_step, device, warmup, repeats)
    peak_train = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    if profile is not None:
        profile_steps(name, train_step, score_step, device, profile)
    row.update({"train_samples_per_s": batch_size / t_train, "score_samples_per_s": eval_batch_size / t_eval,
                "peak_train_memory_gib": peak_train, "peak_score_memory_gib": peak_eval})
    return row


def largest_fitting(fits, start: int, limit: int) -> int:
    """The largest n in [1, limit] for which `fits(n)` (False from some n on): doubling from `start` (capped at
    `limit`), then bisection; no n is tried twice. 0 if not even 1 fits."""
    lo, n = 0, min(start, limit)
    while fits(n):
        if n == limit:
            return limit
        lo, n = n, min(2 * n, limit)
    hi = n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def largest_training_batch(model: torch.nn.Module, speed: Speed, device: torch.device, optim_config: OptimConfig,
                           start: int, limit: int = 4096) -> int:
    """The largest training batch whose step (forward, backward, Adam with its state) fits in the CUDA memory
    this process may use (`torch.cuda.set_per_process_memory_fraction` caps it, e.g. to an 80 GB card's)."""
    step = train_step_of(model, maybe_compile(model, speed), speed, device, optim_config)
    # Each batch size is a new static shape for a compiled model: past dynamo's recompile limit (8) it would
    # silently run eager, and the search would measure eager memory.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)

    def fits(batch: int) -> bool:
        try:
            step(torch.randn(batch, model.nb_samp, device=device), torch.randint(0, 2, (batch,), device=device))
            torch.cuda.synchronize(device)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            model.zero_grad(set_to_none=True)  # free what a failed step held before the next try
            torch.cuda.empty_cache()

    return largest_fitting(fits, start, limit)


def profile_steps(name: str, train_step, score_step, device, path: Path) -> None:
    """Append the operators that take the most time in two training steps and one scoring step, then the
    same grouped by input shape (which convolution is which), and on CUDA `kernel_table`."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    with open(path, "a") as f:
        for what, fn, n in (("train step", train_step, 2), ("scoring step", score_step, 1)):
            with profile(activities=activities, record_shapes=True) as prof:
                for _ in range(n):
                    fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
            f.write(f"\n=== {name}: {what} x{n} ===\n")
            f.write(prof.key_averages().table(sort_by=sort_by, row_limit=25, max_name_column_width=70))
            f.write(f"\n--- {name}: {what}, by input shape ---\n")
            f.write(prof.key_averages(group_by_input_shape=True).table(
                sort_by=sort_by, row_limit=25, max_name_column_width=40, max_shapes_column_width=100))
            if device.type == "cuda":
                f.write(f"\n--- {name}: {what}, GPU kernels by the operator that launched them ---\n")
                f.write(kernel_table(prof.events()))


def kernel_table(events, rows: int = 30) -> str:
    """GPU time per (kernel, the operator that launched it with its input shapes, the outermost operator
    above that), largest first: which convolution runs on which kernel, and where each layout conversion
    (nchwToNhwc, nhwcToNchw) comes from. `events`: a profile's `FunctionEvent`s (kernels hang on the
    operator that launched them, `cpu_parent` leads up)."""
    totals = collections.defaultdict(lambda: [0, 0.0])
    for event in events:
        for kernel in event.kernels:
            outer = event
            while outer.cpu_parent is not None:
                outer = outer.cpu_parent
            shapes = [shape for shape in event.input_shapes if shape]  # tensors only, not scalar arguments
            launcher = f"{event.name} {shapes}" if shapes else event.name
            key = (kernel.name, launcher, outer.name)
            totals[key][0] += 1
            totals[key][1] += kernel.duration
    if not totals:
        return "(no GPU kernels recorded)\n"
    grand = sum(us for _, us in totals.values())
    lines = [f"{'ms':>8} {'%':>5} {'calls':>5}  kernel <- launching operator (input shapes) <- outermost operator"]
    for (kernel, launcher, outer), (calls, us) in sorted(totals.items(), key=lambda kv: -kv[1][1])[:rows]:
        lines.append(f"{us / 1e3:8.2f} {100 * us / grand:5.1f} {calls:5d}  {kernel[:90]} <- {launcher[:160]} <- {outer[:80]}")
    lines.append(f"{grand / 1e3:8.2f} 100.0        all kernels")
    return "\n".join(lines) + "\n"


def write_noise_flacs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` flac files of noise at typical ASVspoof 2019 LA lengths (1.5 to 6 s), to time a loader on."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        n = int(rng.integers(24_000, 96_000))
        paths.append(Path(folder) / f"u{i}.flac")
        sf.write(paths[-1], (0.1 * rng.standard_normal(n)).clip(-1, 1), 16000, subtype="PCM_16")
    return paths


def items_per_second(dataset) -> float:
    """Items/s of reading every item of a training dataset once, as one loader worker does."""
    t0 = time.perf_counter()
    for i in range(len(dataset)):
        dataset[(i, i)]
    return len(dataset) / (time.perf_counter() - t0)
