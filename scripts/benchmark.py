"""Measure training and scoring throughput, peak memory and loader speed, against the published code's cost.

    python scripts/benchmark.py --device cuda --compile --json bench.json
    python scripts/benchmark.py --device cpu --batch_size 8

Every mode runs the same network on the same synthetic input. The baseline, "published", is the
plain formulation (`build_model(..., fast=False)`: the model as its published code computes it, e.g.
AASIST's one-channel sinc convolution and max_pool2d throughout) run as the published code ran it: fp32
eager mode, on CUDA with the published script's cuDNN settings (deterministic) and PyTorch's default TF32
convolutions. The ratio columns are each
mode's throughput over the baseline's, measured in the same run. Times are medians of
--repeats timed repeats after --warmup untimed ones, with device synchronisation. Loader speed is
items/s of one worker reading flac and cropping; with --loader_augment, also with each RawBoost algorithm
and each codec round trip (every item augmented) before the crop.
"""
import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from data_utils import ProtocolEntry, TrainDataset  # noqa: E402
from data_utils.augmentation.augmenter import CODECS, Augmenter  # noqa: E402
from data_utils.augmentation.rawboost import ALGORITHMS  # noqa: E402
from models import MODELS, build_model, load_state_dict  # noqa: E402
from models.loading import resolve_device  # noqa: E402
from utils.config import AugmentationConfig, load_config  # noqa: E402
from utils.errors import InputError, report_error, user_message  # noqa: E402
from utils.io import atomic_write_json  # noqa: E402
from utils.experiments.benchmark import items_per_second, largest_training_batch, measure_model, write_noise_flacs  # noqa: E402
from models.fast import prepare_model  # noqa: E402
from utils.precision import Speed  # noqa: E402


MODE_HELP = ("comma-separated modes: 'published', or fp32|bf16 with any of +compile (torch.compile), "
             "+graphs (compiled graphs replayed as CUDA graphs), +cl (channels-last layout), "
             "+det (cuDNN deterministic instead of benchmark), +gc (gradient checkpointing, where the model "
             "supports it), +parts (score big batches in parts under 2^31 elements, where the model supports it), "
             "e.g. bf16+compile+graphs+cl")


def parse_mode(spec: str) -> dict:
    """'published' or e.g. 'bf16+compile+cl' -> the mode's name, whether it is the plain formulation,
    and its `Speed`."""
    if spec == "published":  # fp32 with PyTorch's default TF32 convolutions, as the published code ran
        return {"name": "published (fp32 eager)", "spec": spec, "fast": False, "speed": Speed(tf32=True)}
    precision, *flags = spec.split("+")
    if precision not in ("fp32", "bf16") or not set(flags) <= {"compile", "graphs", "cl", "det", "gc", "parts"} \
            or ("graphs" in flags and "compile" not in flags):
        raise InputError(f"unknown mode {spec!r}; {MODE_HELP}")
    name = " ".join([precision, "compiled" if "compile" in flags else "eager"] + ["+ CUDA graphs"] * ("graphs" in flags)
                    + ["channels-last"] * ("cl" in flags) + ["cuDNN deterministic"] * ("det" in flags)
                    + ["gradient checkpointing"] * ("gc" in flags) + ["scored in parts"] * ("parts" in flags))
    speed = Speed(precision, channels_last="cl" in flags, compile="compile" in flags, cuda_graphs="graphs" in flags,
                  cudnn_deterministic="det" in flags, cudnn_benchmark="det" not in flags,
                  gradient_checkpointing="gc" in flags, score_in_parts="parts" in flags)
    return {"name": name, "spec": spec, "fast": True, "speed": speed}


def check_modes(modes: list[dict], model_class) -> None:
    """Refuse a mode that asks for a capability the model does not declare (`models.base.Countermeasure`)."""
    for flag, setting, supports in (("gc", "gradient_checkpointing", "supports_gradient_checkpointing"),
                                    ("parts", "score_in_parts", "supports_scoring_in_parts")):
        if any(getattr(m["speed"], setting) for m in modes) and not getattr(model_class, supports)():
            able = [name for name, (_, cls) in MODELS.items() if getattr(cls, supports)()]
            raise InputError(f"+{flag}: {model_class.architecture} does not support it "
                             f"(models that do: {', '.join(able) or 'none'})")


def loader_augmenters() -> dict[str, Augmenter]:
    """Each RawBoost algorithm, and each codec the installed libsndfile has, applied to every item
    (codec compression levels drawn from [0.1, 0.9])."""
    augmenters = {f"RawBoost {algo} ({name})": Augmenter(AugmentationConfig(rawboost_algo=algo))
                  for algo, name in ALGORITHMS.items() if algo}
    for codec in CODECS:
        try:
            augmenters[f"{codec} round trip"] = Augmenter(AugmentationConfig(codec_prob=1.0, codecs=[codec]))
        except InputError as e:
            print(f"loader: {codec} skipped: {user_message(e)}", file=sys.stderr)
    return augmenters


def measure_loader(nb_samp: int, data_dir: Path | None, num_items: int,
                   augment: bool = False) -> tuple[float, dict[str, float]]:
    """Items/s of one loader worker reading a flac and cropping (or repeat-padding) it to nb_samp; and with
    `augment`, {augmentation: items/s} with each of `loader_augmenters` applied before the crop."""
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted(data_dir.glob("*.flac"))[:num_items] if data_dir else write_noise_flacs(Path(tmp), num_items)
        if not files:
            raise InputError(f"no .flac files in {data_dir}")
        entries = [ProtocolEntry("-", f.stem, "-", "bonafide") for f in files]
        plain = items_per_second(TrainDataset(entries, files[0].parent, nb_samp))
        augmented = {name: items_per_second(TrainDataset(entries, files[0].parent, nb_samp, augmenter))
                     for name, augmenter in (loader_augmenters() if augment else {}).items()}
        return plain, augmented


def default_modes(device: torch.device, precisions: list[str], compile_too: bool) -> list[str]:
    """The baseline, then each precision eager; on CUDA bf16 also channels-last, compiled, with CUDA graphs."""
    modes = ["published"] + precisions
    if device.type == "cuda" and "bf16" in precisions:
        modes += ["bf16+cl"] + (["bf16+compile+cl", "bf16+compile+graphs+cl"] if compile_too else [])
    elif compile_too:
        modes += [f"{p}+compile" for p in precisions]
    return modes


def print_table(device_name: str, rows: list[dict], batch_size: int, eval_batch_size: int, loader: float,
                augmented: dict[str, float]) -> None:
    base = rows[0]
    print(f"\n{device_name}: train batch {batch_size}, scoring batch {eval_batch_size}")
    print(f"{'mode':<40} {'train samp/s':>12} {'ratio':>6} {'score samp/s':>12} {'ratio':>6} "
          f"{'train GiB':>9} {'score GiB':>9} {'max|dlogit|':>11} {'1st step s':>12}")
    for r in rows:
        gib = ["-" if r[k] is None else f"{r[k]:.1f}" for k in ("peak_train_memory_gib", "peak_score_memory_gib")]
        diff = r.get("max_abs_logit_diff_vs_fp32")
        print(f"{r['mode']:<40} {r['train_samples_per_s']:12.1f} "
              f"{r['train_samples_per_s'] / base['train_samples_per_s']:6.2f} {r['score_samples_per_s']:12.1f} "
              f"{r['score_samples_per_s'] / base['score_samples_per_s']:6.2f} {gib[0]:>9} {gib[1]:>9} "
              f"{'-' if diff is None else f'{diff:.1e}':>11} "
              f"{r['first_train_step_s']:5.1f} / {r['first_score_step_s']:4.1f}")
    best_train = max(r["train_samples_per_s"] for r in rows)
    best_score = max(r["score_samples_per_s"] for r in rows)
    print(f"loader: {loader:.0f} items/s per worker (flac read + crop); the fastest modes need about "
          f"{int(np.ceil(best_train / loader))} workers to train, {int(np.ceil(best_score / loader))} to score")
    if any("max_abs_logit_diff_vs_fp32" in r for r in rows):
        print("max|dlogit|: largest logit difference from fp32 eager on the scoring batch, same weights")
    print("1st step s: seconds of the first training / scoring step (compilation and graph capture included)")
    for name, rate in augmented.items():
        print(f"loader + {name}: {rate:.0f} items/s per worker")


def measure_all(modes: list[dict], config, device, batch_size: int, eval_batch_size: int, args, state_dict):
    """Every mode (fp32 eager, where measured, is the logits reference of later modes), then the loader."""
    nb_samp = config.model_config.nb_samp
    rows, reference = [], None
    for mode in modes:
        torch.manual_seed(0)
        model = build_model(config.model_config, fast=mode["fast"], pretrained=False)
        if state_dict is not None:
            model.load_state_dict(state_dict)
        model = prepare_model(model, device, mode["speed"])
        row = {"mode": mode["name"], "spec": mode["spec"],
               **measure_model(model, mode["speed"], device, config.optim_config, batch_size, eval_batch_size, args.warmup,
                               args.repeats, args.profile, mode["name"])}
        if args.max_batch:
            row["largest_train_batch"] = largest_training_batch(model, mode["speed"], device, config.optim_config,
                                                               batch_size)
            print(f"{row['mode']}: largest training batch {row['largest_train_batch']}", flush=True)
        logits = row.pop("logits")
        if reference is not None:
            row["max_abs_logit_diff_vs_fp32"] = (logits - reference).abs().max().item()
        if mode["spec"] == "fp32" and reference is None:
            reference = logits
        rows.append(row)
        print(f"{row['mode']}: train {row['train_samples_per_s']:.1f}, score {row['score_samples_per_s']:.1f} samples/s",
              flush=True)
    return rows, measure_loader(nb_samp, args.loader_data, args.loader_items, args.loader_augment)


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
    p.add_argument("--loader_augment", action="store_true",
                   help="also time the loader with each RawBoost algorithm (1-8) and each codec round trip")
    p.add_argument("--profile", type=Path, default=None, help="append each mode's top operators (torch.profiler) here")
    p.add_argument("--max_batch", action="store_true",
                   help="CUDA: also find each mode's largest training batch that fits (doubling, then bisection)")
    p.add_argument("--memory_limit_gib", type=float, default=None,
                   help="CUDA: let this process use at most this much GPU memory, e.g. 80 for an 80 GB card's")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    try:
        device = resolve_device(args.device)
        if (args.max_batch or args.memory_limit_gib) and device.type != "cuda":
            raise InputError("--max_batch and --memory_limit_gib measure CUDA memory: use --device cuda")
        if args.memory_limit_gib:
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_limit_gib * 2**30 / total), device)
        config = load_config(args.config)
        precision = args.precision or ("both" if device.type == "cuda" else "fp32")
        precisions = ["fp32", "bf16"] if precision == "both" else [precision]
        specs = args.modes.split(",") if args.modes else default_modes(device, precisions, args.compile)
        modes = [parse_mode(s.strip()) for s in specs]
        check_modes(modes, MODELS[config.model_config.architecture][1])
        state_dict = load_state_dict(args.weights) if args.weights else None
        batch_size = args.batch_size or config.batch_size
        eval_batch_size = args.eval_batch_size or (256 if device.type == "cuda" else batch_size)
        device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                       else f"CPU ({torch.get_num_threads()} threads)")
        rows, (loader, augmented) = measure_all(modes, config, device, batch_size, eval_batch_size, args, state_dict)
        print_table(device_name, rows, batch_size, eval_batch_size, loader, augmented)
        if args.json is not None:
            report = {"device": device_name, "torch": torch.__version__, "batch_size": batch_size,
                      "eval_batch_size": eval_batch_size, "modes": rows, "loader_items_per_s_per_worker": loader}
            if args.loader_augment:
                report["loader_augmented_items_per_s_per_worker"] = augmented
            atomic_write_json(args.json, report)
    except InputError as e:  # a bad config or mode, no flac files for the loader, an unwritable --json path
        return report_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
