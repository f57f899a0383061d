"""Train AASIST with the published recipe (Jung et al., 2022) on ASVspoof 2019 LA, or the demo corpus.

    python scripts/train.py --config config/config.json
    python scripts/train.py --config config/config.json --resume --output_dir exp_result/LA_config_ep100_bs24
    torchrun --nproc_per_node=4 scripts/train.py --config config/config.json

After every epoch: dev scores, dev EER and min t-DCF (with the dev ASV scores), model selection on
dev only, and an atomic resumable checkpoint. At the end: the weight average (SWA) with
recomputed BatchNorm statistics, scored on eval. The machinery is `utils/engine/training.py`.
"""
import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from data_utils import TrainSampler, load_split  # noqa: E402
from models import build_model  # noqa: E402
from models.loading import resolve_device  # noqa: E402
from utils.config import Config, load_config  # noqa: E402
from utils.distributed import DistInfo, cleanup, init_distributed  # noqa: E402
from utils.errors import InputError, report_error  # noqa: E402
from models.fast import prepare_model  # noqa: E402
from utils.precision import resolve_speed  # noqa: E402
from utils.experiments.provenance import mark_finished, read_run_info, record_session, session_record  # noqa: E402
from utils.engine.training import (CHECKPOINT, build_run, fit, load_checkpoint, run_folder_lock, say,  # noqa: E402
                            seed_everything)


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


def resolve_run(args) -> tuple[Config, Path, int, dict | None]:
    """The config, run folder and seed; the checkpoint too when resuming."""
    config = load_config(args.config) if args.config is not None else None
    run_dir = args.output_dir
    if run_dir is None:
        name = f"LA_{args.config.stem}_ep{config.num_epochs}_bs{config.batch_size}"
        run_dir = REPO_ROOT / "exp_result" / (f"{name}_{args.comment}" if args.comment else name)
    if not args.resume:
        return config, run_dir, args.seed, None
    checkpoint, saved = load_checkpoint(run_dir)
    if config is not None and config != saved:
        raise InputError(f"--resume: {args.config} differs from the config of the run in {run_dir}; "
                         "resume without --config to use the run's own")
    return saved, run_dir, checkpoint["seed"], checkpoint


def train(args, device_type: str, dist_info: DistInfo) -> None:
    config, run_dir, seed, checkpoint = resolve_run(args)
    with run_folder_lock(run_dir, dist_info):
        if checkpoint is None and (run_dir / CHECKPOINT).exists():
            raise InputError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --output_dir")
        if checkpoint is not None:
            read_run_info(run_dir)  # a damaged run record stops the resume now, not after the data are loaded
        train_in(run_dir, config, seed, checkpoint, device_type, dist_info,
                 config_name=args.config.stem if args.config is not None else None)


def train_in(run_dir: Path, config: Config, seed: int, checkpoint: dict | None, device_type: str,
             dist_info: DistInfo, config_name: str | None = None) -> None:
    device = torch.device(device_type, dist_info.local_rank) if device_type == "cuda" else torch.device("cpu")
    if config.batch_size % dist_info.world_size:
        raise InputError(f"batch_size {config.batch_size} does not divide over {dist_info.world_size} processes")
    seed_everything(seed)

    root, nb_samp = Path(config.database_path), config.model_config.nb_samp
    asv_paths = {"dev": root / config.dev_asv_score_path, "eval": root / config.asv_score_path}
    # eval: scored with the best dev model (eval_all_best) and the weight average, which any epoch may start
    # (swa_max_dev_eer 0 admits an epoch of 0 % dev EER).
    names = ("train", "dev", "eval")
    splits = {name: load_split(root, name, nb_samp, asv_paths.get(name), corpus=config.corpus,
                               augmentation=config.augmentation, train_crop=config.train_crop) for name in names}
    for name in names[1:]:
        if splits[name].asv is None:
            say(dist_info, f"note: no ASV scores at {asv_paths[name]}: {name} min t-DCF is not computed, EER only")

    speed = resolve_speed(config, device, "train", distributed=dist_info.enabled)
    model = prepare_model(build_model(config.model_config, pretrained=checkpoint is None), device, speed)
    sampler = TrainSampler(len(splits["train"].dataset), seed, dist_info.rank, dist_info.world_size)
    run = build_run(config, seed, run_dir, device, speed, dist_info, splits, model, sampler, checkpoint)
    if checkpoint is not None:
        say(dist_info, f"resuming {run_dir} after epoch {run.state.epoch}")
    say(dist_info, f"run folder: {run_dir}  device: {device}  precision: {speed.precision}  "
                   f"processes: {dist_info.world_size}  "
                   f"train/dev: {len(splits['train'].dataset)}/{len(splits['dev'].dataset)} utterances")
    if dist_info.is_main:  # what produced the numbers (scripts/report.py prints it under its tables)
        record_session(run_dir, config, seed, session_record(device, speed, dist_info.world_size), config_name,
                       fresh=checkpoint is None)
    fit(run)
    if dist_info.is_main:
        mark_finished(run_dir)
    say(dist_info, f"done: best dev EER {run.state.best_dev_eer:.3f} % at epoch {run.state.best_epoch}; "
                   f"weights in {run_dir / 'weights'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        device_type = resolve_device(args.device).type
    except InputError as e:
        return report_error(e)
    dist_info = init_distributed(device_type)
    status, together = 0, True
    try:
        train(args, device_type, dist_info)
    except FloatingPointError as e:  # every rank saw it (the losses are averaged first)
        print(f"error: {e}", file=sys.stderr)
        status = 2
    except InputError as e:  # perhaps on this rank alone
        status, together = report_error(e), False
    # Here, not in the except blocks: their tracebacks hold the DDP model, which must be gone before gloo is.
    cleanup(dist_info, together)
    return status


if __name__ == "__main__":
    sys.exit(main())
