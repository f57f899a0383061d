"""Fit an affine calibration (score -> natural-log LLR) on a dev score file, and report what it changes.

A 2019-LA-format CM score file (lines ``UTT_ID SOURCE KEY SCORE``):

    python scripts/calibrate.py --scores DEV_SCORES.txt --out calib.json

A corpus's score file with its keys (the formats of data_utils/corpora/, e.g. ASVspoof 5 track 1):

    python scripts/calibrate.py --scores dev_scores.tsv --corpus asvspoof5 \
        --keys ASVspoof5.dev.track_1.tsv --out calib.json

Writes calib.json (``llr = scale * score + offset``; load it with utils.evaluation.calibration.load_calibration and
``.apply`` it to eval scores) and prints actDCF, Cllr and minDCF of the set before and after. minDCF does not
move under an increasing affine map: it is the floor that actDCF approaches when the calibration is good.
The fit weights the classes by ``--p_target`` (default: ASVspoof 5 track 1's effective prior of bona fide).
Bad input exits with status 2 and one ``error: ...`` line on stderr.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from utils.evaluation.calibration import ASV5_P_TARGET, fit_calibration, save_calibration  # noqa: E402
from utils.errors import InputError, report_error  # noqa: E402
from utils.io import check_writable  # noqa: E402
from utils.evaluation.metrics import compute_act_dcf, compute_cllr, compute_min_dcf  # noqa: E402
from utils.evaluation.score_files import read_cm_scores  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", type=Path, required=True,
                        help="dev score file: 'UTT_ID SOURCE KEY SCORE' lines, or with --corpus that corpus's format")
    parser.add_argument("--out", type=Path, required=True, help="the calibration JSON to write")
    parser.add_argument("--corpus", help="read --scores in this corpus's format: asvspoof5, asvspoof2021_la, "
                                         "asvspoof2021_df or in_the_wild (data_utils/corpora/)")
    parser.add_argument("--keys", type=Path, help="with --corpus: its key file (or keys folder) as released")
    parser.add_argument("--subset", help="with --corpus, for ASVspoof 2021: the subset to fit on (default eval)")
    parser.add_argument("--p_target", type=float, default=ASV5_P_TARGET,
                        help=f"effective prior of bona fide that weights the fit (default {ASV5_P_TARGET:.4f}, "
                             "the ASVspoof 5 track 1 operating point)")
    return parser


def read_dev_scores(args) -> tuple[np.ndarray, np.ndarray]:
    """(Nb,) bona fide and (Ns,) spoof scores of the file named by ``--scores``."""
    if args.corpus is None:
        cm = read_cm_scores(args.scores)
        return cm.scores[cm.keys == "bonafide"], cm.scores[cm.keys == "spoof"]
    # Here, not at the top: data_utils imports torch, which a 2019 LA score file does not need.
    from data_utils.corpora import CM_LABELS, get_corpus

    corpus = get_corpus(args.corpus)
    trials = corpus.read_keys(args.keys, args.subset)
    scores = corpus.read_scores(args.scores, trials)
    if scores.ndim != 1 or not np.all(np.isin(trials.labels, CM_LABELS)):
        raise InputError(f"--corpus {args.corpus}: calibration needs one CM score per trial and bona fide/spoof "
                         "keys; calibrate the CM scores of the track 1 files (--corpus asvspoof5)")
    labels, scores = trials.labels[trials.in_subset], scores[trials.in_subset]
    return scores[labels == "bonafide"], scores[labels == "spoof"]


def figures(bonafide: np.ndarray, spoof: np.ndarray) -> dict[str, float]:
    return {"actDCF": compute_act_dcf(bonafide, spoof), "Cllr (bits)": compute_cllr(bonafide, spoof),
            "minDCF": compute_min_dcf(bonafide, spoof)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.corpus is None) != (args.keys is None):
        parser.error("--corpus and --keys go together")
    if args.subset is not None and args.corpus is None:
        parser.error("--subset needs --corpus")
    try:
        check_writable(args.out)
        bonafide, spoof = read_dev_scores(args)
        cal = fit_calibration(bonafide, spoof, p_target=args.p_target, fitted_on=str(args.scores))
        before, after = figures(bonafide, spoof), figures(cal.apply(bonafide), cal.apply(spoof))
        save_calibration(args.out, cal)
    except InputError as e:
        return report_error(e)
    sign = "-" if cal.offset < 0 else "+"
    print(f"calibration: llr = {cal.scale:.6g} * score {sign} {abs(cal.offset):.6g}  "
          f"({cal.n_bonafide} bona fide, {cal.n_spoof} spoof; p_target {cal.p_target:.4f})")
    print(f"{'':<12} {'before':>10} {'after':>10}")
    for name in before:
        print(f"{name:<12} {before[name]:10.5f} {after[name]:10.5f}")
    print("(minDCF is the floor: no increasing affine map changes it; calibrated, actDCF comes close to it)")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
