"""Evaluate a countermeasure: EER, min t-DCF and EER per attack, as the published evaluation reports them.

Score a set with a model (writes the score file, then reports its metrics):

    python scripts/evaluate.py --config config/config.json --eval_set eval [--model_path W] [--json OUT.json]

Metrics from an existing CM score file:

    python scripts/evaluate.py --scores SCORES.txt [--asv_scores ASV_SCORES.txt] [--json OUT.json]

ASV_SCORES.txt: the organisers' file, e.g. LA/ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt.

Other corpora (ASVspoof 2021 LA and DF, In-the-Wild, ASVspoof 5; data_utils/corpora.py), with their keys as
released and their official metrics:

    python scripts/evaluate.py --corpus asvspoof2021_la --scores score.txt --keys keys [--subset eval]
    python scripts/evaluate.py --corpus asvspoof2021_la --config config/config.json --database_path ROOT --keys keys

Without ASV scores (``--asv_scores``, or the set's file under the database) the 2019 min t-DCF is not computed.
Bad input exits with status 2 and one ``error: ...`` line on stderr. Every output (the score file, --json,
--plot) is checked to be writable before scoring; one that still fails at the end is reported on stderr after
the metrics, the other outputs are written all the same, and the exit status is 2.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from utils.errors import InputError, report_error, user_message  # noqa: E402
from utils.io import check_writable  # noqa: E402
from utils.score_files import (ASVScores, CMScores, compute_metrics, format_metrics, read_asv_scores,  # noqa: E402
                               read_cm_scores, write_cm_scores, write_metrics_json)
from utils.plots import require_matplotlib, save_plots  # noqa: E402  (matplotlib itself is imported lazily)
from data_utils.corpora import CORPORA, evaluate_score_file, format_corpus_metrics, get_audio_corpus  # noqa: E402
from utils.calibration import load_calibration  # noqa: E402

LA2019 = "asvspoof2019_la"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    with_model = parser.add_argument_group("score a set with a model")
    with_model.add_argument("--config", type=Path, help="JSON config (model, database_path, model_path)")
    with_model.add_argument("--eval_set", choices=["dev", "eval"], default="eval", help="which set (default eval)")
    with_model.add_argument("--model_path", type=Path, help="weights; overrides the config's model_path")
    with_model.add_argument("--database_path", type=Path, help="corpus root; overrides the config's database_path")
    with_model.add_argument("--output_dir", type=Path, help="where the score file goes (default exp_result/evaluate)")
    with_model.add_argument("--batch_size", type=int, help="default: the config's eval_batch_size or batch_size")
    with_model.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available")
    with_model.add_argument("--precision", choices=["fp32", "bf16"],
                            help="default: the config's precision if it names one, else fp32 (the published numbers)")
    with_model.add_argument("--compile", action="store_true",
                            help="torch.compile the model (also when the config's compile is true): about a minute "
                                 "first, then faster scoring; worth it for a whole set")
    corpora = parser.add_argument_group("other corpora (default: ASVspoof 2019 LA, as above)")
    corpora.add_argument("--corpus", default=LA2019, choices=[LA2019, *CORPORA],
                         help="the corpus of --scores or of the set to score")
    corpora.add_argument("--keys", type=Path, help="its keys as released: 2021, the keys folder; In-the-Wild, "
                         "meta.csv; ASVspoof 5, the protocol (ASVspoof5.eval.track_1.tsv, track_2.trial.tsv)")
    corpora.add_argument("--subset", help="2021: eval (default, the official figures), progress or hidden")
    corpora.add_argument("--calibration", type=Path, help="a calibration JSON (scripts/calibrate.py): also report "
                         "the figures of the calibrated scores (actDCF and Cllr change)")
    corpora.add_argument("--resume", action="store_true",
                         help="with --config: continue an interrupted scoring job where it stopped")
    from_scores = parser.add_argument_group("metrics from a score file")
    from_scores.add_argument("--scores", type=Path,
                             help="CM score file: lines 'UTT_ID SOURCE KEY SCORE', KEY bonafide|spoof")
    from_scores.add_argument("--asv_scores", type=Path,
                             help="organisers' ASV score file ('SOURCE KEY SCORE'), needed for the min t-DCF; "
                                  "with --config it overrides the set's file under database_path")
    parser.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="also write a DET curve and score histograms (PNG) to DIR; needs matplotlib")
    return parser


def scoring_inputs(args):
    """The config, corpus root, weights and output folder of a scoring run: the options, else the config's."""
    from utils.config import load_config
    config = load_config(args.config)
    return (config, args.database_path or Path(config.database_path), args.model_path or Path(config.model_path),
            args.output_dir or Path("exp_result") / "evaluate")


def scoring_model(args, config, model_path: Path, device):
    """The model with its weights, ready to score on `device` (precision and compile: the options, else the
    config's), and its `Speed`."""
    from models.loading import load_scoring_model
    return load_scoring_model(config, model_path, device, precision=args.precision, compile=args.compile or None)


def score_with_model(args) -> tuple[CMScores, Path, ASVScores | None]:
    """Score `--eval_set` with the model. Returns the scores, the score file to write them to (checked to be
    writable before scoring) and the ASV scores."""
    # Imported here, not at the top: the metrics-only mode does not need torch.
    from data_utils import load_split
    from models.loading import resolve_device
    from utils.scoring import score_dataset

    config, database, model_path, output_dir = scoring_inputs(args)
    score_file = output_dir / f"{model_path.stem}_{args.eval_set}_scores.txt"
    check_writable(score_file)  # now, not after the set is scored
    device = resolve_device(args.device)
    asv_path = args.asv_scores or database / (config.dev_asv_score_path if args.eval_set == "dev" else config.asv_score_path)
    split = load_split(database, args.eval_set, config.model_config.nb_samp, asv_path,
                       asv_required=bool(args.asv_scores), corpus=config.corpus)
    if split.asv is None:
        print(f"note: no ASV scores at {asv_path}: min t-DCF is not computed")

    model, speed = scoring_model(args, config, model_path, device)
    cm = score_dataset(model, split.dataset, args.batch_size or config.scoring_batch_size(), device,
                       config.loader_workers(), desc=args.eval_set, precision=speed.precision)
    return cm, score_file, split.asv


def score_corpus_with_model(args, dist_info) -> Path:
    """Score every trial of `--keys` with the model and write the corpus's official score file; its path.

    Scores go to disk in chunks as they come (flat memory; `--resume` continues an interrupted job without
    scoring finished chunks again); under torchrun the processes share the chunks and rank 0 writes the file.
    """
    from data_utils.dataset import AudioFiles, check_files_exist
    from utils.scoring import score_to_file
    import torch

    corpus = get_audio_corpus(args.corpus)
    config, database, model_path, output_dir = scoring_inputs(args)
    score_file = output_dir / f"{model_path.stem}_{args.corpus}_scores.txt"
    trials = corpus.read_keys(args.keys)  # every trial: the official packages want them all, any subset
    paths = corpus.audio_paths(database, trials.audio_ids)
    check_files_exist(paths)
    device = torch.device("cuda", dist_info.local_rank) if args.device_type == "cuda" else torch.device("cpu")
    model, speed = scoring_model(args, config, model_path, device)
    if dist_info.is_main:
        note_if_replacing(score_file)
    score_to_file(model, AudioFiles(paths, trials.ids, config.model_config.nb_samp), score_file,
                  corpus.write_scores, args.batch_size or config.scoring_batch_size(), device,
                  config.loader_workers(), dist_info, speed.precision, resume=args.resume, desc=args.corpus)
    if dist_info.is_main:
        print(f"scores: {score_file}")
    return score_file


def evaluate_corpus(args) -> int:
    """--corpus other than 2019 LA: the official figures of a score file, scoring the audio first with --config
    (under torchrun, every process scores a share and rank 0 reports)."""
    dist_info = None
    try:
        if args.keys is None:
            raise InputError(f"--corpus {args.corpus} needs --keys (its keys as released)")
        if args.json is not None:
            check_writable(args.json)
        if args.config is not None:
            from models.loading import resolve_device
            from utils.distributed import init_distributed
            args.device_type = resolve_device(args.device).type
            dist_info = init_distributed(args.device_type)
            score_file = score_corpus_with_model(args, dist_info)
            if not dist_info.is_main:
                return 0
        else:
            score_file = args.scores
        calibration = load_calibration(args.calibration) if args.calibration is not None else None
        metrics = evaluate_score_file(args.corpus, score_file, args.keys, args.subset, args.asv_scores, calibration)
    except InputError as e:
        return report_error(e)
    finally:
        if dist_info is not None:
            from utils.distributed import cleanup
            cleanup(dist_info)
    metrics["score_file"] = str(score_file)
    print(format_corpus_metrics(metrics))
    failed = []
    if args.json is not None:
        save_metrics(args.json, metrics, failed)
    return report_failures(failed)


def note_if_replacing(score_file: Path) -> None:
    """Another model's scores may be there (two weights files called best.pth): say so, never silently."""
    if score_file.exists():
        print(f"note: replacing {score_file}, which an earlier evaluation wrote")


def save_metrics(path: Path, metrics: dict, failed: list[str]) -> None:
    """Write the metrics JSON; a failure is added to ``failed``, the metrics having been printed already."""
    try:
        write_metrics_json(path, metrics)
    except InputError as e:
        failed.append(f"{e}; the metrics are only in the report above")


def report_failures(messages: list[str]) -> int:
    """One ``error: ...`` line on stderr per message; returns the exit status (2 if any, else 0)."""
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    return 2 if messages else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.config is None) == (args.scores is None):
        parser.error("give either --config (score a set with a model) or --scores (metrics from a score file)")
    if args.batch_size is not None and args.batch_size <= 0:
        parser.error("--batch_size must be positive")
    if args.corpus != LA2019:
        if args.plot is not None:
            parser.error("--plot is for ASVspoof 2019 LA score files")
        return evaluate_corpus(args)
    failed = []  # the outputs that could not be written at the end, after the work
    try:
        # Before scoring, not after: an hour of scoring is not lost to a missing package or folder.
        if args.plot is not None:
            require_matplotlib()
            check_writable(args.plot, folder=True)
        if args.json is not None:
            check_writable(args.json)
        score_file = None
        if args.config is not None:
            cm, score_file, asv = score_with_model(args)
            note_if_replacing(score_file)
            try:
                write_cm_scores(score_file, cm)
                print(f"scores: {score_file}")
            except InputError as e:
                failed.append(f"{e}; the scores were not saved")
                score_file = None
        else:
            asv = read_asv_scores(args.asv_scores) if args.asv_scores is not None else None
            cm = read_cm_scores(args.scores)
        metrics = compute_metrics(cm, asv)
    except InputError as e:
        return report_failures([*failed, user_message(e)])
    if score_file is not None:
        metrics["score_file"] = str(score_file)
    print(format_metrics(metrics))
    if args.plot is not None:
        try:
            for path in save_plots(cm, args.plot):
                print(f"plot: {path}")
        except InputError as e:
            failed.append(str(e))
    if args.json is not None:
        save_metrics(args.json, metrics, failed)
    return report_failures(failed)


if __name__ == "__main__":
    sys.exit(main())
