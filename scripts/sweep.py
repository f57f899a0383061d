"""Train a config (or a few) with several seeds and score every run on every evaluation corpus, through submitit.

    python scripts/sweep.py --config config/config.json --seeds 1 2 3
    python scripts/sweep.py --config config/config.json --seeds 1 2 3 \\
        --evaluate asvspoof2021_la /data /data/keys \\
        --evaluate in_the_wild /data /data/release_in_the_wild/meta.csv
    python scripts/sweep.py --config config/config.json --seeds 1 2 3 --launcher slurm --slurm_partition gpu

Run folders: <sweep_dir>/<config name>_seed<seed> (default sweep_dir: exp_result/sweep_<config names>).
Locally the runs go one after another (on a CPU or one GPU) or one per GPU at a time; on SLURM they are
one job array. Rerunning the same command trains nothing that is finished and resumes what is not.
Then: python scripts/report.py <sweep_dir>. The machinery is utils/experiments/sweep.py.
"""
import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from data_utils.corpora import CORPORA, get_audio_corpus  # noqa: E402
from utils.errors import InputError, report_error  # noqa: E402
from utils.io import check_writable  # noqa: E402
from utils.experiments.sweep import LAUNCHERS, Evaluation, importable_here, launch_local, launch_slurm, seed_jobs  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, nargs="+", required=True, help="JSON config(s) to train")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="one run per seed")
    p.add_argument("--evaluate", nargs=3, action="append", default=[], metavar=("CORPUS", "DATABASE", "KEYS"),
                   help=f"also score every run on this corpus ({', '.join(CORPORA)}) with its audio root and keys "
                        "(as scripts/evaluate.py --corpus/--database_path/--keys); repeat for more corpora. "
                        "The config's own eval set is always scored")
    p.add_argument("--subset", default=None,
                   help="for the corpora with subsets (2021 LA and DF): eval (default), progress or hidden")
    p.add_argument("--sweep_dir", type=Path, help="default exp_result/sweep_<config names, joined by +>")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local")
    p.add_argument("--timeout_min", type=int, default=3 * 24 * 60,
                   help="time limit of one job, minutes (SLURM: the job's; a timed-out job is requeued and resumes)")
    slurm = p.add_argument_group("SLURM (--launcher slurm)")
    slurm.add_argument("--slurm_partition")
    slurm.add_argument("--cpus_per_task", type=int, default=8)
    slurm.add_argument("--mem_gb", type=int)
    slurm.add_argument("--wait", action="store_true", help="wait for the jobs and report failures")
    return p.parse_args(argv)


def evaluations(args) -> tuple[Evaluation, ...]:
    out = []
    for corpus, database, keys in args.evaluate:
        found = get_audio_corpus(corpus)  # InputError for an unknown name or a SASV corpus
        for path in (database, keys):
            if not Path(path).exists():
                raise InputError(f"--evaluate {corpus}: not found: {path}")
        subset = args.subset if found.subsets else None  # --subset is for the corpora that have subsets
        if subset is not None and subset not in found.subsets:
            raise InputError(f"--subset {subset}: {corpus}'s subsets are {', '.join(found.subsets)}")
        out.append(Evaluation(corpus, str(Path(database).resolve()), str(Path(keys).resolve()), subset))
    if len({e.corpus for e in out}) < len(out):
        raise InputError("--evaluate: a corpus is listed twice")
    return tuple(out)


def gpus_here(device: str | None) -> int:
    import torch
    return 0 if device == "cpu" else torch.cuda.device_count()


def main(argv=None) -> int:
    args = parse_args(argv)
    sweep_dir = args.sweep_dir or REPO_ROOT / "exp_result" / f"sweep_{'+'.join(c.stem for c in args.config)}"
    try:
        jobs = seed_jobs(args.config, args.seeds, sweep_dir, evaluations(args), args.device)
        check_writable(sweep_dir, folder=True)
        importable_here()
        folder = sweep_dir / "submitit"
        if args.launcher == "local":
            failures = launch_local(jobs, folder, gpus_here(args.device), args.timeout_min)
        else:
            failures = launch_slurm(jobs, folder, args.timeout_min, args.wait, slurm_partition=args.slurm_partition,
                                    gpus_per_node=0 if args.device == "cpu" else 1, cpus_per_task=args.cpus_per_task,
                                    mem_gb=args.mem_gb)
    except InputError as e:
        return report_error(e)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: launch_local has stopped the running jobs and their commands
        print(f"error: sweep stopped; its running jobs were stopped too. Rerun the same command to resume "
              f"({sweep_dir})", file=sys.stderr)
        return 130
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    if not failures:
        print(f"sweep folder: {sweep_dir}\nresults table: python scripts/report.py {sweep_dir}")
    return 2 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
