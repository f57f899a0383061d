"""Evaluate a countermeasure on any corpus (``data_utils.corpora``): score a set with a model, or read a score
file, then the corpus's official figures. What ``scripts/evaluate.py`` runs, for every corpus alike.

A set to score is either a training corpus's split (``--eval_set``: scored in memory, as training scores its
dev and eval sets, with the organisers' ASV scores where the corpus has them), or every trial of a key file
as released (``--keys``: scored into resumable chunks on disk, shared by the processes under torchrun).
"""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from data_utils.corpora import Corpus, Trials, evaluate_scores
from data_utils.corpora.common import check_id_words
from data_utils.dataset import AudioFiles, check_files_exist, load_split
from utils.distributed import DistInfo
from utils.errors import InputError
from utils.io import atomic_open, check_writable
from utils.engine.scoring import score_dataset, score_to_file


@dataclass
class Scored:
    """What scoring a set gives: the trials the figures use, the scores in their order ((N,) float64),
    whatever else the figures need (ASV scores), and the score file (None if it could not be written)."""

    trials: Trials
    scores: np.ndarray
    extra: object
    score_file: Path | None


def check_distinct(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """Refuse, before anything is written, an output that is one of the inputs or another output (``--json``
    naming the key file would turn the keys into JSON)."""
    seen: dict[str, str] = {}
    for name, path in [*inputs.items(), *outputs.items()]:
        if path is None:
            continue
        real = os.path.realpath(path)
        if real in seen and name in outputs:
            raise InputError(f"{name} {path} is also {seen[real]}: choose another path for {name}")
        seen.setdefault(real, name)


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise InputError(f"cannot read weights file {path}: {e.strerror or e}") from None
    return h.hexdigest()


def _owner(score_file: Path) -> str | None:
    """The digest of the weights that wrote ``score_file`` (its ``.sha256`` record), or None if unknown."""
    try:
        return score_file.with_name(score_file.name + ".sha256").read_text().split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None


def score_file_for(output_dir: Path, model_path: Path, set_name: str, digest: str) -> Path:
    """Where the scores of ``model_path`` on ``set_name`` go: ``<weights stem>_<set>_scores.txt``, unless other
    weights (or weights not recorded) wrote that file; then ``<stem>-<digest>_<set>_scores.txt``. Different
    weights never share a file, whatever their names (every run writes ``weights/best.pth``), and a file
    another model wrote is never replaced."""
    plain = output_dir / f"{model_path.stem}_{set_name}_scores.txt"
    if not plain.exists() or _owner(plain) == digest:
        if plain.exists():
            print(f"note: replacing {plain}, which an earlier evaluation of the same weights wrote")
        return plain
    own = output_dir / f"{model_path.stem}-{digest[:12]}_{set_name}_scores.txt"
    print(f"note: {plain} holds the scores of other weights; these go to {own}")
    return own


def record_owner(score_file: Path, model_path: Path, digest: str) -> None:
    """``<score file>.sha256``: the weights' digest and path, as ``sha256sum`` writes them."""
    with atomic_open(score_file.with_name(score_file.name + ".sha256")) as f:
        f.write(f"{digest}  {model_path}\n")


def scoring_trials(corpus: Corpus, keys: Path | None, eval_set: str) -> Trials | None:
    """The trials to score from ``keys`` (all subsets: the official packages want them all), or None to score
    the corpus's split ``eval_set``; InputError for a corpus that has neither."""
    if keys is not None:
        trials = corpus.read_keys(keys)
        check_id_words(trials)  # now, not after every file has been scored
        return trials
    if eval_set not in corpus.splits:
        raise InputError(f"--corpus {corpus.name} needs --keys (its keys as released)")
    return None


def scoring_length(model_class, model_config, full_length: bool) -> int | None:
    """What is scored of each utterance: the config's first `nb_samp` samples, or None for the whole utterance
    (full-length scoring; one utterance a batch, each its own length) where the model takes any length.

    Raises:
        InputError: full length asked of a model whose layers fix its input length, naming it.
    """
    if not full_length:
        return model_config.nb_samp
    if model_class.fixed_length:
        raise InputError(f"--full_length: {model_config.architecture} takes exactly {model_config.nb_samp} samples "
                         "per input (its layers are sized for that length); score it without --full_length")
    return None


def score_split(corpus: Corpus, database: Path, eval_set: str, config, make_model: Callable, score_file: Path,
                batch_size: int, device, dist_info: DistInfo, asv_scores: Path | None, nb_samp: int | None) -> Scored:
    """Score the split ``eval_set`` of a training corpus in memory (``load_split``: checked before any
    scoring) and write its score file; the scores survive a score file that cannot be written."""
    extra = None
    if corpus.split_asv:
        asv_path = asv_scores or database / (config.dev_asv_score_path if eval_set == "dev"
                                             else config.asv_score_path)
        split = load_split(database, eval_set, nb_samp, asv_path, asv_required=asv_scores is not None,
                           corpus=corpus.name)
        extra = split.asv
        if extra is None:
            print(f"note: no ASV scores at {asv_path}: min t-DCF is not computed")
    else:
        split = load_split(database, eval_set, nb_samp, corpus=corpus.name)
    model, speed = make_model()
    split.dataset.min_samples = getattr(model, "min_samples", 1)  # full length: padded up to what the model takes
    cm = score_dataset(model, split.dataset, batch_size if nb_samp is not None else 1, device, config.loader_workers(),
                       dist_info, desc=eval_set, precision=speed.precision)
    return Scored(split.trials, cm.scores, extra, score_file)


def score_keys(corpus: Corpus, trials: Trials, database: Path, config, make_model: Callable, score_file: Path,
               batch_size: int, device, dist_info: DistInfo, resume: bool, nb_samp: int | None) -> np.ndarray | None:
    """Score every trial of ``trials`` into ``score_file`` through resumable chunks (``score_to_file``); the
    (N,) scores on rank 0, None on the others. A resumed job must be the same job: same weights, precision,
    ``nb_samp``, model config, trials (and their order) and audio root."""
    paths = corpus.audio_paths(database, trials.audio_ids)
    check_files_exist(paths)
    model, speed = make_model()
    job = {"nb_samp": nb_samp if nb_samp is not None else "full length",
           "model_config": hashlib.sha256(repr(config.model_config).encode()).hexdigest(),
           "trials": hashlib.sha256("\n".join(trials.ids.tolist()).encode()).hexdigest(),
           "audio_root": str(Path(database).resolve())}
    return score_to_file(model, AudioFiles(paths, trials.ids, nb_samp, getattr(model, "min_samples", 1)), score_file,
                         corpus.score_writer(trials), batch_size if nb_samp is not None else 1, device,
                         config.loader_workers(), dist_info, speed.precision, resume=resume, desc=corpus.name,
                         job_info=job)


def write_split_scores(corpus: Corpus, scored: Scored, failed: list[str]) -> None:
    """Write the score file of a scored split; a failure goes to ``failed`` (the figures are kept)."""
    try:
        corpus.score_writer(scored.trials)(scored.score_file, scored.trials.ids, scored.scores)
    except InputError as e:
        failed.append(f"{e}; the scores were not saved")
        scored.score_file = None


def figures(corpus: Corpus, scored: Scored, calibration=None) -> dict:
    """The corpus's figures of ``scored``, with ``score_file`` where one was written."""
    metrics = evaluate_scores(corpus, scored.trials, np.asarray(scored.scores, dtype=np.float64), scored.extra,
                              calibration)
    if scored.score_file is not None:
        metrics["score_file"] = str(scored.score_file)
    return metrics


def check_writable_outputs(json_path: Path | None, plot_dir: Path | None) -> None:
    """Before any work: the JSON file and the plot folder can be written (and matplotlib is there)."""
    if plot_dir is not None:
        from utils.evaluation.plots import require_matplotlib
        require_matplotlib()
        check_writable(plot_dir, folder=True)
    if json_path is not None:
        check_writable(json_path)


def plot_scores(scored: Scored, out_dir: Path) -> list[Path]:
    """A DET curve and score histograms (``utils.evaluation.plots``) of the trials the figures use; CM scores only."""
    from utils.evaluation.plots import save_plots
    from utils.evaluation.score_files import CMScores
    trials, scores = scored.trials, np.asarray(scored.scores)
    if scores.ndim != 1:
        raise InputError(f"--plot needs CM scores, not the SASV scores of {trials.path}")
    keep = trials.in_subset
    sources = np.where(trials.labels == "bonafide", "-", trials.factors.get("attack", np.full(len(trials), "-")))
    return save_plots(CMScores(trials.ids[keep], sources[keep], trials.labels[keep], scores[keep]), out_dir)
