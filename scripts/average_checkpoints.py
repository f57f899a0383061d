"""Average the weights of several saved epochs of one run into one weights file (checkpoint averaging, as
Nes2Net's `main.py --num_average_model N --model_ID_to_average ...` does for its "CKPT Avg. 3 / 5" results):

    python scripts/average_checkpoints.py RUN/weights/epoch_61_0.512.pth RUN/weights/epoch_70_0.498.pth \
        RUN/weights/epoch_88_0.471.pth --out RUN/weights/avg3.pth [--config CONFIG]

Every tensor is the mean over the files, BatchNorm's running statistics included (none are recomputed, as
published). The result is a bare state dict in the files' layout that loads like any weights file
(`evaluate.py --model_path`, `infer.py`). With `--config`, it is loaded into that config's model before it is
written. An existing --out is never replaced. Bad input exits with status 2 and one `error: ...` line on stderr.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from models.loading import average_weights, build_model, load_weights_into  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import InputError, report_error  # noqa: E402
from utils.io import atomic_torch_save, check_writable, printable_path  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, nargs="+", help="the weights files to average (two or more)")
    parser.add_argument("--out", type=Path, required=True, help="the averaged weights file to write (must not exist)")
    parser.add_argument("--config", type=Path, help="check that the average loads into this config's model")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.out.exists():
            raise InputError(f"{printable_path(args.out)} exists; choose another --out (results are never replaced)")
        check_writable(args.out)
        averaged = average_weights(args.weights)
        if args.config is not None:
            load_weights_into(build_model(load_config(args.config).model_config, pretrained=False), averaged,
                              f"the average of {len(args.weights)} files")
        atomic_torch_save(averaged, args.out)
    except InputError as e:
        return report_error(e)
    print(f"averaged {len(args.weights)} weights files into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
