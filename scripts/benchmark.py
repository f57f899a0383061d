"""Measure training and scoring throughput, peak memory and loader speed, against the published code's cost.

    python scripts/benchmark.py --device cuda --compile --json bench.json
    python scripts/benchmark.py --device cpu --batch_size 8

Every mode runs the same network on the same synthetic input. The baseline, "published", runs the
published forward pass's full work (the one-channel sinc convolution, the discarded bn1 + SELU in
every residual block, max_pool2d everywhere) in fp32 eager mode, on CUDA with the published
script's cuDNN settings (deterministic) and PyTorch's default TF32 convolutions; the ratio columns
are each mode's throughput over the baseline's, measured in the same run. Times are medians of
--repeats timed repeats after --warmup untimed ones, with device synchronisation. Loader speed is
items/s of one worker reading flac and cropping.
"""
import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from data_utils import ProtocolEntry, TrainDataset  # noqa: E402
from models import AASIST, aasist, layers, load_state_dict  # noqa: E402
from models.loading import resolve_device  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import InputError  # noqa: E402
from utils.io import atomic_open  # noqa: E402
from utils.precision import autocast, maybe_compile, set_cuda_flags, use_channels_last  # noqa: E402


# --- the baseline: the published forward pass's work --------------------------------------------

def _published_block_forward(self, x):
    if not self.first:
        self.selu(self.bn1(x))  # computed and discarded, as the published block does
    out = self.conv2(self.selu(self.bn2(self.conv1(x))))
    identity = x if self.conv_downsample is None else self.conv_downsample(x)
    return F.max_pool2d(out + identity, (1, 3))


def _published_sinc_conv(x, filters, taps):
    return F.conv1d(x.unsqueeze(1), filters.unsqueeze(1))  # one input channel, as published


@contextlib.contextmanager
def published_work():
    """Run AASIST with the published code's extra work (same outputs, more time)."""
    with mock.patch.object(layers.ResidualBlock, "forward", _published_block_forward), \
            mock.patch.object(aasist, "max_pool", F.max_pool2d), \
            mock.patch.object(layers, "polyphase_conv1d", _published_sinc_conv):
        yield


# --- timing ----------------------------------------------------------------------------------

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


MODE_HELP = ("comma-separated modes: 'published', or fp32|bf16 with any of +compile (torch.compile), "
             "+graphs (compiled graphs replayed as CUDA graphs), +cl (channels-last layout), "
             "+det (cuDNN deterministic instead of benchmark), e.g. bf16+compile+graphs+cl")


def parse_mode(spec: str) -> dict:
    """'published' or e.g. 'bf16+compile+cl' -> the settings of one mode."""
    if spec == "published":
        return {"name": "published (fp32 eager)", "spec": spec, "published": True, "precision": "fp32",
                "compile": False, "cuda_graphs": False, "channels_last": False, "deterministic": True}
    precision, *flags = spec.split("+")
    if precision not in ("fp32", "bf16") or not set(flags) <= {"compile", "graphs", "cl", "det"} \
            or ("graphs" in flags and "compile" not in flags):
        raise InputError(f"unknown mode {spec!r}; {MODE_HELP}")
    name = " ".join([precision, "compiled" if "compile" in flags else "eager"] + ["+ CUDA graphs"] * ("graphs" in flags)
                    + ["channels-last"] * ("cl" in flags) + ["cuDNN deterministic"] * ("det" in flags))
    return {"name": name, "spec": spec, "published": False, "precision": precision, "compile": "compile" in flags,
            "cuda_graphs": "graphs" in flags, "channels_last": "cl" in flags, "deterministic": "det" in flags}


def measure_mode(model_config, mode: dict, device, batch_size: int, eval_batch_size: int, nb_samp: int,
                 warmup: int, repeats: int, state_dict=None, reference_logits=None, profile=None) -> dict:
    torch.manual_seed(0)
    model = AASIST(model_config)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    model = use_channels_last(model.to(device), mode["channels_last"], device, mode["precision"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    weight = torch.tensor([0.1, 0.9], device=device)
    gen = torch.Generator(device="cpu").manual_seed(1)
    x_train = torch.randn(batch_size, nb_samp, generator=gen).to(device)
    y_train = torch.randint(0, 2, (batch_size,), generator=gen).to(device)
    x_eval = torch.randn(eval_batch_size, nb_samp, generator=gen).to(device)
    run_model = maybe_compile(model, mode["compile"], device, mode["cuda_graphs"])
    patch = published_work() if mode["published"] else contextlib.nullcontext()
    if device.type == "cuda":
        if mode["published"]:  # the published script's settings, on PyTorch's defaults (TF32 convolutions)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
            torch.backends.cudnn.allow_tf32 = True
        else:
            set_cuda_flags(deterministic=mode["deterministic"], benchmark=not mode["deterministic"])

    def train_step():
        model.train()
        with autocast(mode["precision"], device):
            _, logits = run_model(x_train)
        loss = F.cross_entropy(logits.float(), y_train, weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def score_step():
        model.eval()
        with autocast(mode["precision"], device):
            return run_model(x_eval)[1].float().clone()  # a CUDA graph's output is overwritten by the next replay

    row = {"mode": mode["name"], "spec": mode["spec"]}
    with patch:
        # Outputs first, before training moves the weights: the same weights and input in every mode.
        logits = score_step()
        row["logits"] = logits
        if reference_logits is not None:
            row["max_abs_logit_diff_vs_fp32"] = (logits - reference_logits).abs().max().item()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_eval = timed(score_step, device, warmup, repeats)
        peak_eval = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_train = timed(train_step, device, warmup, repeats)
        peak_train = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        if profile is not None:
            profile_steps(mode["name"], train_step, score_step, device, profile)
    row.update({"train_samples_per_s": batch_size / t_train, "score_samples_per_s": eval_batch_size / t_eval,
                "peak_train_memory_gib": peak_train, "peak_score_memory_gib": peak_eval})
    return row


def profile_steps(name: str, train_step, score_step, device, path: Path) -> None:
    """Append the operators that take the most time in two training steps and one scoring step, then the
    same grouped by input shape (which convolution is which)."""
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


def measure_loader(nb_samp: int, data_dir: Path | None, num_items: int) -> float:
    """Items/s of one loader worker: read a flac, random crop (or repeat-pad) to nb_samp."""
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir is None:  # real flac files of typical 2019 LA lengths (1.5 to 6 s)
            data_dir = Path(tmp)
            rng = np.random.default_rng(0)
            for i in range(num_items):
                n = int(rng.integers(24_000, 96_000))
                sf.write(data_dir / f"u{i}.flac", (0.1 * rng.standard_normal(n)).clip(-1, 1), 16000, subtype="PCM_16")
        files = sorted(data_dir.glob("*.flac"))[:num_items]
        if not files:
            raise InputError(f"no .flac files in {data_dir}")
        dataset = TrainDataset([ProtocolEntry("-", f.stem, "-", "bonafide") for f in files], data_dir, nb_samp)
        t0 = time.perf_counter()
        for i in range(len(dataset)):
            dataset[(i, i)]
        return len(dataset) / (time.perf_counter() - t0)


def default_modes(device: torch.device, precisions: list[str], compile_too: bool) -> list[str]:
    """The baseline, then each precision eager; on CUDA bf16 also channels-last, compiled, with CUDA graphs."""
    modes = ["published"] + precisions
    if device.type == "cuda" and "bf16" in precisions:
        modes += ["bf16+cl"] + (["bf16+compile+cl", "bf16+compile+graphs+cl"] if compile_too else [])
    elif compile_too:
        modes += [f"{p}+compile" for p in precisions]
    return modes


def print_table(device_name: str, rows: list[dict], batch_size: int, eval_batch_size: int, loader: float) -> None:
    base = rows[0]
    print(f"\n{device_name}: train batch {batch_size}, scoring batch {eval_batch_size}")
    print(f"{'mode':<40} {'train samp/s':>12} {'ratio':>6} {'score samp/s':>12} {'ratio':>6} "
          f"{'train GiB':>9} {'score GiB':>9} {'max|dlogit|':>11}")
    for r in rows:
        gib = ["-" if r[k] is None else f"{r[k]:.1f}" for k in ("peak_train_memory_gib", "peak_score_memory_gib")]
        diff = r.get("max_abs_logit_diff_vs_fp32")
        print(f"{r['mode']:<40} {r['train_samples_per_s']:12.1f} "
              f"{r['train_samples_per_s'] / base['train_samples_per_s']:6.2f} {r['score_samples_per_s']:12.1f} "
              f"{r['score_samples_per_s'] / base['score_samples_per_s']:6.2f} {gib[0]:>9} {gib[1]:>9} "
              f"{'-' if diff is None else f'{diff:.1e}':>11}")
    best_train = max(r["train_samples_per_s"] for r in rows)
    best_score = max(r["score_samples_per_s"] for r in rows)
    print(f"loader: {loader:.0f} items/s per worker (flac read + crop); the fastest modes need about "
          f"{int(np.ceil(best_train / loader))} workers to train, {int(np.ceil(best_score / loader))} to score")
    if any("max_abs_logit_diff_vs_fp32" in r for r in rows):
        print("max|dlogit|: largest logit difference from fp32 eager on the scoring batch, same weights")


def measure_all(modes: list[dict], config, device, batch_size: int, eval_batch_size: int, args, state_dict):
    """Every mode (fp32 eager, where measured, is the logits reference of later modes), then the loader."""
    nb_samp = config.model_config.nb_samp
    rows, reference = [], None
    for mode in modes:
        row = measure_mode(config.model_config, mode, device, batch_size, eval_batch_size, nb_samp,
                           args.warmup, args.repeats, state_dict, reference, args.profile)
        logits = row.pop("logits")
        if mode["spec"] == "fp32" and reference is None:
            reference = logits
        rows.append(row)
        print(f"{row['mode']}: train {row['train_samples_per_s']:.1f}, score {row['score_samples_per_s']:.1f} samples/s",
              flush=True)
    return rows, measure_loader(nb_samp, args.loader_data, args.loader_items)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO_ROOT / "config" / "config.json", help="model to measure")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    p.add_argument("--batch_size", type=int, default=None, help="training batch (default: the config's)")
    p.add_argument("--eval_batch_size", type=int, default=None, help="scoring batch (default 256 on CUDA, else --batch_size)")
    p.add_argument("--precision", choices=["fp32", "bf16", "both"], default=None,
                   help="modes besides the baseline (default: both on CUDA, fp32 on CPU)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile'd modes")
    p.add_argument("--modes", default=None, help=MODE_HELP + "; overrides --precision and --compile. "
                   "The first is the baseline of the ratio columns")
    p.add_argument("--weights", type=Path, default=None,
                   help="load these weights (e.g. the published AASIST.pth) so that max|dlogit| is meaningful")
    p.add_argument("--warmup", type=int, default=3, help="untimed repeats first (compilation happens here)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    p.add_argument("--loader_data", type=Path, default=None, help="folder of flac files for the loader (default: generated)")
    p.add_argument("--loader_items", type=int, default=64, help="files the loader measurement reads")
    p.add_argument("--profile", type=Path, default=None, help="append each mode's top operators (torch.profiler) here")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    try:
        device = resolve_device(args.device)
        config = load_config(args.config)
        precision = args.precision or ("both" if device.type == "cuda" else "fp32")
        precisions = ["fp32", "bf16"] if precision == "both" else [precision]
        specs = args.modes.split(",") if args.modes else default_modes(device, precisions, args.compile)
        modes = [parse_mode(s.strip()) for s in specs]
        state_dict = load_state_dict(args.weights) if args.weights else None
        batch_size = args.batch_size or config.batch_size
        eval_batch_size = args.eval_batch_size or (256 if device.type == "cuda" else batch_size)
        device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                       else f"CPU ({torch.get_num_threads()} threads)")
        rows, loader = measure_all(modes, config, device, batch_size, eval_batch_size, args, state_dict)
        print_table(device_name, rows, batch_size, eval_batch_size, loader)
        if args.json is not None:
            with atomic_open(args.json) as f:
                json.dump({"device": device_name, "torch": torch.__version__, "batch_size": batch_size,
                           "eval_batch_size": eval_batch_size, "modes": rows,
                           "loader_items_per_s_per_worker": loader}, f, indent=2)
    except InputError as e:  # a bad config or mode, no flac files for the loader, an unwritable --json path
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
