"""One results table from many runs: mean +- std, best and worst seed, per config, with what produced them.

    python scripts/report.py exp_result/sweep_config                      # a sweep folder (or run folders)
    python scripts/report.py exp_result/sweep_config --format latex --out table.tex
    python scripts/report.py RUN_A RUN_B --format json                    # for tools

Runs are grouped by config (its hash: equal configs only are averaged). Per metric (dev EER, and each
evaluated corpus's figures for the best-dev model and the weight average, then per-attack EER): mean +-
sample standard deviation, the best run with its seed, the worst, and n. Under each table: the code,
software, hardware and precision the runs used, and a WARNING line for each way the averaged runs differ.
Formats: markdown (default), csv, latex, json ({"groups": [{"config", "n", "metrics": {NAME: {"mean", "std",
"min", "max", "values", "seeds"}}, ...}]}). The machinery is utils/experiments/report.py.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.errors import InputError, report_error  # noqa: E402
from utils.io import atomic_open, check_writable  # noqa: E402
from utils.experiments.report import FORMATS, FORMATTERS, find_runs, group_runs, read_run  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR_OR_SWEEP")
    p.add_argument("--format", choices=FORMATS, default="markdown")
    p.add_argument("--out", type=Path, help="write the table here (default: print it)")
    args = p.parse_args(argv)
    try:
        if args.out is not None:
            check_writable(args.out)
        text = FORMATTERS[args.format](group_runs([read_run(r) for r in find_runs(args.runs)]))
        if args.out is None:
            print(text, end="")
        else:
            with atomic_open(args.out) as f:
                f.write(text)
            print(f"table: {args.out}")
    except InputError as e:
        return report_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
