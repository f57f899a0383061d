"""Evaluate a countermeasure: EER, min t-DCF and EER per attack, as the published evaluation reports them.

Metrics from an existing CM score file:

    python scripts/evaluate.py --scores SCORES.txt [--asv_scores ASV_SCORES.txt] [--json OUT.json]

ASV_SCORES.txt: the organisers' file, e.g. LA/ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt.

Without ``--asv_scores`` the min t-DCF is not computed (it needs the ASV system's scores).
Bad input exits with status 2 and one ``error: ...`` line on stderr.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from utils.errors import InputError  # noqa: E402
from utils.scores import compute_metrics, read_asv_scores, read_cm_scores, write_metrics_json  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    from_scores = parser.add_argument_group("metrics from a score file")
    from_scores.add_argument("--scores", type=Path, required=True,
                             help="CM score file: lines 'UTT_ID SOURCE KEY SCORE', KEY bonafide|spoof")
    from_scores.add_argument("--asv_scores", type=Path,
                             help="organisers' ASV score file ('SOURCE KEY SCORE'), needed for the min t-DCF")
    # The model-scoring mode (--config CONFIG --eval_set dev|eval [--model_path]) gets its own group here
    # (then --scores is required only without --config): it scores the set with the score() that training
    # uses, writes a CM score file with utils.scores.write_cm_scores, and goes on as metrics_from_files does.
    parser.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    return parser


def report(metrics: dict) -> None:
    """Print EER, min t-DCF and the per-attack EER table of a ``compute_metrics`` dict."""
    print(f"EER:        {metrics['eer_percent']:.9f} %  (CM threshold {metrics['eer_threshold']:.6g})")
    if metrics["min_tdcf"] is None:
        print("min t-DCF:  not computed (no ASV scores given: pass --asv_scores)")
    else:
        print(f"min t-DCF:  {metrics['min_tdcf']:.9f}")
    print("\nattack   EER (%)")
    for attack, eer in metrics["per_attack_eer_percent"].items():
        print(f"{attack:<8} {eer:9.4f}")


def metrics_from_files(scores_path: Path, asv_scores_path: Path | None) -> dict:
    """Read a CM score file (and an ASV score file) and compute the metrics dict."""
    asv = read_asv_scores(asv_scores_path) if asv_scores_path is not None else None
    return compute_metrics(read_cm_scores(scores_path), asv)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        metrics = metrics_from_files(args.scores, args.asv_scores)
        report(metrics)
        if args.json is not None:
            write_metrics_json(args.json, metrics)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
