"""The corpora: their keys, score files, audio paths, training splits and official metrics.

One class per corpus, one module per corpus family, registered in ``CORPORA`` (``registry.py``) under its name:

=================== ============================================ ================================ ===================
name                keys (as released)                           score file (one row per trial)   figures
=================== ============================================ ================================ ===================
``asvspoof2019_la`` a CM protocol (or none: the score file       ``UTT_ID SOURCE KEY SCORE``      EER, min t-DCF
                    carries the keys); splits train/dev/eval                                      (2019), per attack
``asvspoof2021_la`` ``keys/LA/{CM,ASV}/trial_metadata.txt`` +    ``trial score``                  EER, min t-DCF
                    ``keys/LA/ASV/ASVTorch_Kaldi/score.txt``                                      (revised), tables
``asvspoof2021_df`` ``keys/DF/CM/trial_metadata.txt``            ``trial score``                  EER, table
``in_the_wild``     ``release_in_the_wild/meta.csv``             ``file score``                   EER
``asvspoof5``       ``ASVspoof5.eval.track_1.tsv`` (or the       ``filename<TAB>cm-score``        minDCF, EER, Cllr,
                    package's ``cm_key.tsv`` / full key);        with that header                 actDCF, tables
                    splits train/dev/eval
``asvspoof5_sasv``  ``ASVspoof5.eval.track_2.trial.tsv`` (or     ``spk filename cm-score          a-DCF, min t-DCF,
                    the package's ``sasv_key.tsv`` / full key)   asv-score sasv-score`` (TAB)     t-EER, tables
=================== ============================================ ================================ ===================

Every corpus has the same few methods (``base.Corpus``): ``read_keys(keys_path, subset)`` -> ``Trials``;
``read_scores(path, trials)`` -> scores aligned with the trials (a file that does not match the keys is
refused with an ``InputError`` naming the file, the count and the first ids); ``metrics(scores, trials,
extra)`` -> the figures of the official evaluation, to the digit; ``report(metrics)`` -> the printed
figures; ``audio_paths(root, audio_ids)`` and ``score_writer(trials)`` for scoring the audio; and, for a
training corpus, ``split_trials(root, split)``. ``evaluate_score_file`` chains them.

Figures of the official packages use these JSON names: ``eer_percent``, ``min_tdcf``, ``min_dcf``,
``act_dcf``, ``cllr_bits``, ``a_dcf``, ``t_eer_percent``; ``tables`` holds one table per figure, ``{"rows",
"columns", "values"}`` with rows = attack (or vocoder), columns = codec (or compression), and the pooled
condition where the official table puts it (last for 2021, first for ASVspoof 5). A figure or cell that the
official code would not compute (a condition without bona fide or spoof trials, gives NaN) or would stop the
whole run on (fewer than 3 distinct CM scores, ...) is ``None``. 2019 LA keeps the published evaluation's
names: ``eer_percent``, ``eer_threshold``, ``min_tdcf``, ``per_attack_eer_percent``. The maths lives in
``utils/evaluation/metrics.py``.

A new corpus: one module here with its ``Corpus`` subclass, and its class in ``registry.CORPORA``.
"""
from .asvspoof2019 import SplitPaths
from .base import Corpus, format_corpus_metrics
from .common import SAMPLE_RATE, Trials
from .registry import CORPORA, evaluate_score_file, evaluate_scores, get_audio_corpus, get_corpus
from utils.evaluation.score_files import ASV_LABELS, CM_LABELS

__all__ = ["ASV_LABELS", "CM_LABELS", "CORPORA", "Corpus", "SAMPLE_RATE", "SplitPaths", "Trials", "evaluate_score_file",
           "evaluate_scores", "format_corpus_metrics", "get_audio_corpus", "get_corpus"]
