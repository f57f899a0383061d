"""Average the weights of several saved epochs into one weights file (checkpoint averaging, as Nes2Net's
`--num_average_model`): BatchNorm statistics averaged too, as published.

    python scripts/average_checkpoints.py --run_dir exp_result/RUN --best 5      # the 5 best dev epochs
    python scripts/average_checkpoints.py W1.pth W2.pth W3.pth --out avg3.pth

Default output: <run_dir>/weights/avg<N>_best.pth, or with files, --out. An existing file is never replaced.
The result is scored like any weights file: scripts/evaluate.py --model_path OUT.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.averaging import average_weights, best_epochs  # noqa: E402
from utils.errors import InputError, report_error  # noqa: E402
from utils.io import atomic_torch_save, check_writable, printable_path  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="*", type=Path, help="weights files to average (or --run_dir with --best)")
    p.add_argument("--run_dir", type=Path, help="a train.py run folder: average its best saved epochs")
    p.add_argument("--best", type=int, help="with --run_dir: how many of the best dev epochs")
    p.add_argument("--out", type=Path, help="the averaged weights file (must not exist)")
    args = p.parse_args(argv)
    if bool(args.weights) == bool(args.run_dir) or bool(args.run_dir) != (args.best is not None):
        p.error("give weights files, or --run_dir with --best N")
    if args.best is not None and args.best < 2:
        p.error("--best must be at least 2")
    try:
        paths = best_epochs(args.run_dir, args.best) if args.run_dir else args.weights
        out = args.out or (args.run_dir / "weights" / f"avg{args.best}_best.pth" if args.run_dir else None)
        if out is None:
            raise InputError("--out is required with weights files")
        if out.exists():
            raise InputError(f"{printable_path(out)} exists; not replacing it (choose another --out)")
        check_writable(out)
        averaged = average_weights(paths)
        atomic_torch_save(averaged, out)
    except InputError as e:
        return report_error(e)
    print(f"averaged {len(paths)} epochs: " + ", ".join(printable_path(p.name) for p in paths))
    print(f"wrote {printable_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
