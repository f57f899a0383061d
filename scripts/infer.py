"""Score your own recordings with AASIST: files or folders, any format soundfile reads, any sample rate.

    python scripts/infer.py PATH [PATH ...] [--config C] [--model_path W] [--threshold T] [--segments]
                            [--batch_size N] [--device cpu|cuda] [--output FILE.csv|FILE.json]

Folders are searched recursively for audio files (by extension: wav, flac, ogg, mp3, aiff, ...); files
named on the command line are scored whatever their extension. Each recording is averaged to mono and
resampled to 16 kHz. The score is the published one: the bona fide logit (logits[:, 1]) of the first
nb_samp samples, repeat-padded, so it equals evaluate.py's score; higher means more likely bona fide.
--segments also scores the whole recording in nb_samp windows with hop nb_samp // 2 (a last window ends
at the last sample) and reports the window count, the mean and the lowest window score and where that
window starts.

An unreadable file (missing, empty, corrupt, not audio, a name that is not UTF-8) is reported with its
reason and the others are still scored; the exit status is then 1. Bad options or config, NaN or infinite
weights, and an --output that cannot be written (checked before scoring) exit with status 2 and one
`error: ...` line. If --output still cannot be written at the end, the table is printed all the same, then
the error, and the exit status is 2.
"""
import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from tqdm import tqdm  # noqa: E402

from models.loading import load_scoring_model, resolve_device  # noqa: E402
from models.inference import find_audio, read_files, result_row, score_stream, write_results  # noqa: E402
from utils.evaluation.calibration import load_calibration  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.errors import InputError, report_error  # noqa: E402
from utils.io import check_writable, printable_path  # noqa: E402

# The published AASIST's EER threshold on the ASVspoof 2019 LA eval set for the bona fide logit
# (evaluate.py on its published scores reports 1.4934).
DEFAULT_THRESHOLD = 1.49


def finite_float(text: str) -> float:
    """argparse type: a float that is not NaN or infinite (every comparison with NaN is False: all "spoof")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="audio files or folders")
    parser.add_argument("--config", type=Path, default=Path("config/config.json"),
                        help="JSON config of the model (default config/config.json)")
    parser.add_argument("--model_path", type=Path, help="weights; default: the config's model_path")
    parser.add_argument("--threshold", type=finite_float, default=DEFAULT_THRESHOLD,
                        help="score above it: bona fide, else spoof. Default 1.49, the published AASIST's EER "
                             "threshold on the ASVspoof 2019 LA eval set; for other weights use the "
                             "eer_threshold that evaluate.py --json reports")
    parser.add_argument("--segments", action="store_true",
                        help="also score the whole recording in nb_samp windows (hop nb_samp // 2)")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="windows per forward pass (default 8; AASIST needs about 0.2 GB per window on a CPU)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    parser.add_argument("--output", type=Path, help="also write the results to FILE.csv or FILE.json")
    parser.add_argument("--calibration", type=Path,
                        help="a calibration JSON (scripts/calibrate.py): also give each file's LLR")
    return parser


def print_table(records: list[dict], threshold: float, segments: bool) -> None:
    """One line per file on stdout, unreadable files last with their reason on stderr."""
    width = max(len(r["path"]) for r in records)
    header = f"{'path':<{width}}  {'dur (s)':>8}  {'score':>8}  {'P(bona fide)':>12}  decision"
    if segments:
        header += f"  {'windows':>7}  {'mean':>8}  {'lowest':>8}  {'at (s)':>7}"
    if "llr" in records[0]:
        header += f"  {'LLR':>8}"
    print(header)
    for r in records:
        if r["error"] is not None:
            print(f"{r['path']:<{width}}  {'':>8}  {'':>8}  {'':>12}  unreadable")
            continue
        line = (f"{r['path']:<{width}}  {r['duration_s']:8.2f}  {r['score']:8.3f}  {r['bonafide_prob']:12.4f}  "
                f"{r['decision']:<8}")
        if segments:
            line += (f"  {r['num_windows']:7d}  {r['window_mean']:8.3f}  {r['window_min']:8.3f}  "
                     f"{r['window_min_start_s']:7.2f}")
        if "llr" in r:
            line += f"  {r['llr']:8.3f}"
        print(line)
    failed = [r for r in records if r["error"] is not None]
    counts = {d: sum(r["decision"] == d for r in records) for d in ("bonafide", "spoof")}
    print(f"\n{len(records)} files: {counts['bonafide']} bona fide, {counts['spoof']} spoof "
          f"(score > {threshold:g} is bona fide), {len(failed)} unreadable")
    for r in failed:
        print(f"unreadable: {r['error']}", file=sys.stderr)


def run(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """Load the model and score every file; returns the records in file order and the --output metadata."""
    files, skipped = find_audio(args.paths)
    if skipped:
        print(f"note: skipped {skipped} file(s) in the folders without an audio extension", file=sys.stderr)
    config = load_config(args.config)
    calibration = load_calibration(args.calibration) if args.calibration is not None else None
    model_path = args.model_path or Path(config.model_path)
    # The config's speed settings, else fp32 eager (channels-last on a CPU), as evaluate.py scores.
    model, speed = load_scoring_model(config, model_path, resolve_device(args.device))
    records = []
    with tqdm(total=len(files), unit="file", desc="scoring", disable=None, leave=False) as bar:
        # Without --segments only the first nb_samp samples are scored: only they are read (memory stays flat).
        recordings = read_files(files, None if args.segments else model.nb_samp)
        for path, result in score_stream(model, recordings, args.segments, batch_size=args.batch_size,
                                         precision=speed.precision):
            records.append(result_row(path, result, args.threshold, args.segments, calibration))
            bar.update(1)
    meta = {"config": str(args.config), "model_path": str(model_path), "threshold": args.threshold,
            "calibration": None if args.calibration is None else str(args.calibration),
            "nb_samp": model.nb_samp, "hop": model.nb_samp // 2 if args.segments else None}
    return records, meta


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size <= 0:
        parser.error("--batch_size must be positive")
    if args.output is not None and args.output.suffix.lower() not in (".csv", ".json"):
        parser.error(f"--output must end in .csv or .json, got {args.output}")
    try:
        if args.output is not None:
            check_writable(args.output)  # now, not after scoring
        records, meta = run(args)
    except InputError as e:
        return report_error(e)
    print_table(records, args.threshold, args.segments)
    if args.output is not None:
        try:
            write_results(args.output, records, meta)
        except InputError as e:  # the table above still holds every result
            print(f"error: {e}; the results are only in the table above", file=sys.stderr)
            return 2
        print(f"results: {printable_path(args.output)}")
    return 1 if any(r["error"] is not None for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
