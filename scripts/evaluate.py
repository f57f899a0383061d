"""Evaluate a countermeasure on any corpus, with its official figures (data_utils/corpora/).

Score a set with a model (writes the score file, then reports its figures), or give a score file:

    python scripts/evaluate.py --config config/config.json --eval_set eval [--model_path W] [--json OUT.json]
    python scripts/evaluate.py --scores SCORES.txt [--asv_scores ASV_SCORES.txt] [--json OUT.json]

ASVspoof 2019 LA (the default corpus, or the config's "corpus"): score files 'UTT_ID SOURCE KEY SCORE'; EER,
min t-DCF (with the organisers' ASV scores: --asv_scores, or the set's file under the database) and EER per
attack. Other corpora (ASVspoof 2021 LA and DF, In-the-Wild, ASVspoof 5), with their keys as released:

    python scripts/evaluate.py --corpus asvspoof2021_la --scores score.txt --keys keys [--subset eval]
    python scripts/evaluate.py --corpus asvspoof2021_la --config config/config.json --database_path ROOT --keys keys

Bad input exits with status 2 and one ``error: ...`` line on stderr. Every output (the score file, --json,
--plot) is checked to be writable, and to be none of the inputs, before scoring; one that still fails at the
end is reported on stderr after the metrics, the other outputs are written all the same, and the exit status is 2.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, no install needed

from data_utils.corpora import CORPORA, get_audio_corpus, get_corpus  # noqa: E402
from utils.errors import InputError, user_message  # noqa: E402
from utils.evaluation.score_files import write_metrics_json  # noqa: E402

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
    with_model.add_argument("--full_length", action="store_true",
                            help="score whole utterances, one at a time, instead of the first nb_samp samples "
                                 "(models that take any length)")
    with_model.add_argument("--compile", action="store_true",
                            help="torch.compile the model (also when the config's compile is true): about a minute "
                                 "first, then faster scoring; worth it for a whole set")
    corpora = parser.add_argument_group("the corpus (default: the config's corpus, else ASVspoof 2019 LA)")
    corpora.add_argument("--corpus", choices=list(CORPORA), help="the corpus of --scores or of the set to score")
    corpora.add_argument("--keys", type=Path, help="its keys as released: 2021, the keys folder; In-the-Wild, "
                         "meta.csv; ASVspoof 5, the protocol (ASVspoof5.eval.track_1.tsv, track_2.trial.tsv); "
                         "2019 LA, a CM protocol")
    corpora.add_argument("--subset", help="2021: eval (default, the official figures), progress or hidden")
    corpora.add_argument("--calibration", type=Path, help="a calibration JSON (scripts/calibrate.py): also report "
                         "the figures of the calibrated scores (actDCF and Cllr change)")
    corpora.add_argument("--resume", action="store_true",
                         help="with --config and --keys: continue an interrupted scoring job where it stopped")
    from_scores = parser.add_argument_group("metrics from a score file")
    from_scores.add_argument("--scores", type=Path,
                             help="score file: 2019 LA, lines 'UTT_ID SOURCE KEY SCORE', KEY bonafide|spoof")
    from_scores.add_argument("--asv_scores", type=Path,
                             help="organisers' ASV score file (2019 LA: 'SOURCE KEY SCORE'), needed for the 2019 "
                                  "min t-DCF; with --config it overrides the set's file under database_path")
    parser.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument("--plot", type=Path, metavar="DIR",
                        help="also write a DET curve and score histograms (PNG) to DIR; needs matplotlib")
    return parser


def score_with_model(args, config, failed: list[str]):
    """Score the set with the model (under torchrun, every process a share); `Scored`, or None on a rank
    other than 0."""
    import torch
    from data_utils import evaluation
    from models import MODELS
    from models.loading import load_scoring_model, resolve_device
    from utils.distributed import cleanup, init_distributed
    from utils.io import check_writable

    corpus = get_audio_corpus(args.corpus or config.corpus)
    database, model_path = args.database_path or Path(config.database_path), args.model_path or Path(config.model_path)
    output_dir = args.output_dir or Path("exp_result") / "evaluate"
    nb_samp = evaluation.scoring_length(MODELS[config.model_config.architecture][1], config.model_config,
                                        args.full_length)
    trials = evaluation.scoring_trials(corpus, args.keys, args.eval_set)
    set_name = (corpus.name if trials is not None else args.eval_set) + ("_full" if args.full_length else "")
    digest = evaluation.file_digest(model_path) if model_path.is_file() else ""
    score_file = evaluation.score_file_for(output_dir, model_path, set_name, digest)
    evaluation.check_distinct({"the score file": score_file}, inputs(args))
    check_writable(score_file)  # now, not after the set is scored
    device_type = resolve_device(args.device).type
    dist_info = init_distributed(device_type)
    try:
        device = torch.device("cuda", dist_info.local_rank) if device_type == "cuda" else torch.device("cpu")

        def make_model():
            return load_scoring_model(config, model_path, device, precision=args.precision,
                                      compile=False if args.full_length else args.compile or None)
        batch_size = args.batch_size or config.scoring_batch_size()
        if trials is None:
            scored = evaluation.score_split(corpus, database, args.eval_set, config, make_model, score_file,
                                            batch_size, device, dist_info, args.asv_scores, nb_samp)
            if dist_info.is_main:
                evaluation.write_split_scores(corpus, scored, failed)
        else:
            scores = evaluation.score_keys(corpus, trials, database, config, make_model, score_file, batch_size,
                                           device, dist_info, args.resume, nb_samp)
            if not dist_info.is_main:
                return None
            metric_trials = corpus.read_keys(args.keys, args.subset)
            scored = evaluation.Scored(metric_trials, scores, corpus.read_extra(args.keys, metric_trials,
                                                                                args.asv_scores), score_file)
    finally:
        cleanup(dist_info)
    if not dist_info.is_main:
        return None
    if scored.score_file is not None:
        print(f"scores: {score_file}")
        try:
            evaluation.record_owner(score_file, model_path, digest)
        except InputError as e:
            failed.append(f"{e}; the scores' weights were not recorded")
    return scored


def inputs(args) -> dict:
    return {f"--{name}": getattr(args, name) for name in ("config", "model_path", "scores", "keys", "asv_scores",
                                                          "calibration")}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.config is None) == (args.scores is None):
        parser.error("give either --config (score a set with a model) or --scores (metrics from a score file)")
    if args.batch_size is not None and args.batch_size <= 0:
        parser.error("--batch_size must be positive")
    from data_utils import evaluation
    failed = []  # the outputs that could not be written at the end, after the work
    try:
        # Before scoring, not after: an hour of scoring is not lost to a missing package or folder.
        evaluation.check_distinct({"--json": args.json, "--plot": args.plot}, inputs(args))
        evaluation.check_writable_outputs(args.json, args.plot)
        from utils.evaluation.calibration import load_calibration
        calibration = load_calibration(args.calibration) if args.calibration is not None else None
        if args.config is not None:
            import models  # noqa: F401  (registers the architectures whose configs load_config validates)
            from utils.config import load_config
            config = load_config(args.config)
            corpus = get_corpus(args.corpus or config.corpus)
            scored = score_with_model(args, config, failed)
            if scored is None:
                return 0
        else:
            corpus = get_corpus(args.corpus or LA2019)
            trials, scores = corpus.read_scored(args.scores, args.keys, args.subset)
            scored = evaluation.Scored(trials, scores, corpus.read_extra(args.keys, trials, args.asv_scores), None)
        metrics = evaluation.figures(corpus, scored, calibration)
    except InputError as e:
        return report_failures([*failed, user_message(e)])
    print(corpus.report(metrics))
    if args.plot is not None:
        try:
            for path in evaluation.plot_scores(scored, args.plot):
                print(f"plot: {path}")
        except InputError as e:
            failed.append(str(e))
    if args.json is not None:
        try:
            write_metrics_json(args.json, metrics)
        except InputError as e:
            failed.append(f"{e}; the metrics are only in the report above")
    return report_failures(failed)


def report_failures(messages: list[str]) -> int:
    """One ``error: ...`` line on stderr per message; returns the exit status (2 if any, else 0)."""
    for message in messages:
        print(f"error: {message}", file=sys.stderr)
    return 2 if messages else 0


if __name__ == "__main__":
    sys.exit(main())
