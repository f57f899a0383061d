"""Export AASIST for deployment, as ONNX or as a torch.export program, and check the export.

    python scripts/export.py --config C --model_path W --format onnx|torch-export --out FILE
                             [--check_inputs model_golden.npz] [--tolerance 1e-4]

The exported network is AASIST in eval mode on the CPU: input "waveform", (batch, nb_samp) float32 at
16 kHz, with a dynamic batch and exactly nb_samp samples (crop or repeat-pad as evaluate.py does); output
"logits", (batch, 2). The score is logits[:, 1], the bona fide logit.

After export the exported model runs on fixed inputs, in a batch of one and a batch of the rest (sizes the
export did not see), and its logits must equal the PyTorch model's within --tolerance. The inputs are the
array "x" (B, nb_samp) of --check_inputs (e.g. the reference model_golden.npz) or else a seeded random
(3, nb_samp) batch. The file is written, whole, only when the check passes; otherwise the exit status is 1.

torch-export needs nothing beyond torch; load the file with torch.export.load(FILE).module().
onnx needs `pip install onnx onnxruntime`; load the file with onnxruntime.InferenceSession(FILE).
Bad options, config or weights, or a missing package, exit with status 2 and one `error: ...` line.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from models import load_model  # noqa: E402
from models.export import FORMATS, ExportCheckError, LogitsOnly, check_batch, export_checked  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import InputError, report_error  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("config/config.json"),
                        help="JSON config of the model (default config/config.json)")
    parser.add_argument("--model_path", type=Path, help="weights; default: the config's model_path")
    parser.add_argument("--format", choices=FORMATS, required=True, help="onnx or torch-export (.pt2)")
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    parser.add_argument("--check_inputs", type=Path,
                        help='.npz whose array "x" (B, nb_samp) float32 is the check batch '
                             "(default: seeded random, (3, nb_samp))")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed |exported - PyTorch| logit difference (default 1e-4)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error("--tolerance must be >= 0")
    try:
        config = load_config(args.config)
        net = LogitsOnly(load_model(config, args.model_path or Path(config.model_path), device="cpu")).eval()
        x = check_batch(args.check_inputs, config.model_config.nb_samp)
        diff = export_checked(net, x, args.format, args.out, args.tolerance)
    except InputError as e:
        return report_error(e)
    except ExportCheckError as e:
        print(f"error: {e}; {args.out} not written", file=sys.stderr)
        return 1
    print(f"{args.format}: max |exported - PyTorch| logit difference {diff:.3g} on {x.shape[0]} inputs "
          f"of {x.shape[1]} samples, in batches of 1 and {x.shape[0] - 1} (tolerance {args.tolerance:g})")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
