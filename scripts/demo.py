"""The whole job on the synthetic demo corpus, on a CPU in about 5 minutes: make the corpus if it is
absent, train a small AASIST, score its eval set with the best dev model, and say where everything is.

    python scripts/demo.py

It runs the three commands of the README in turn (make_demo_data.py, train.py, evaluate.py); a run
folder that already holds a finished or interrupted run is resumed, not overwritten.
"""
import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args) -> None:
    """Run scripts/<script> with this Python; stop with its exit status if it fails."""
    command = [sys.executable, str(REPO_ROOT / "scripts" / script), *map(str, args)]
    print("$", " ".join(command[1:]), flush=True)
    status = subprocess.run(command).returncode
    if status != 0:
        sys.exit(status)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO_ROOT / "config" / "demo.json",
                   help="config to train (default config/demo.json); its database_path is where the corpus goes")
    p.add_argument("--output_dir", type=Path, default=REPO_ROOT / "exp_result" / "demo", help="run folder")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    args = p.parse_args(argv)
    device = ["--device", args.device] if args.device else []

    database = Path(json.loads(args.config.read_text())["database_path"])  # relative: to the working folder
    if not (database / "ASVspoof2019_LA_cm_protocols").is_dir():
        run("make_demo_data.py", "--out", database)
    resume = ["--resume"] if (args.output_dir / "checkpoint.pth").is_file() else []
    run("train.py", "--config", args.config, "--output_dir", args.output_dir, *resume, *device)
    plots = ["--plot", args.output_dir / "plots"] if importlib.util.find_spec("matplotlib") else []
    run("evaluate.py", "--config", args.config, "--eval_set", "eval", "--model_path",
        args.output_dir / "weights" / "best.pth", "--output_dir", args.output_dir,
        "--json", args.output_dir / "eval_metrics.json", *plots, *device)
    print(f"\nresults in {args.output_dir}: metric_log.txt (per epoch), eval_metrics.json, score files, "
          "weights/best.pth (best dev EER) and weights/swa.pth (weight average)")
    print(f"plots: {args.output_dir / 'plots'}" if plots else "plots: none (pip install matplotlib)")
    print(f"training curves: tensorboard --logdir {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
