"""Write a small synthetic corpus in the ASVspoof 2019 LA layout, to run the whole pipeline without the real data.

    python scripts/make_demo_data.py [--out demo_data/LA] [--seed 0] [--scale 1.0]
    python scripts/train.py --config config/demo.json

How the talkers, the attacks and the recording chain are synthesised: data_utils/demo.py.
The same seed writes byte-identical files.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from data_utils.demo import write_demo_corpus  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_data/LA"),
                        help="corpus root, the database_path of config/demo.json (default: demo_data/LA)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes identical files")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every utterance count by this (at least 2 per source); "
                             "e.g. 0.05 for a quick test corpus (default: 1.0, about 960 utterances)")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f"--scale must be positive, got {args.scale}")
    start = time.time()
    print(f"writing a synthetic ASVspoof 2019 LA-style corpus to {args.out} (seed {args.seed})")
    for line in write_demo_corpus(args.out, args.seed, args.scale):
        print(line)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"done in {time.time() - start:.1f} s, {size / 2**20:.1f} MiB; train with: "
          "python scripts/train.py --config config/demo.json")


if __name__ == "__main__":
    main()
