"""Other corpora: every figure of the official evaluation packages, and the message for each bad score file.

Golden figures: ``reference/corpora/*/metrics_golden.json``, computed by the unmodified official code
(asvspoof-challenge/2021 eval-package, asvspoof-challenge/asvspoof5 evaluation-package) on synthetic
files in the released formats; null = a cell the official code does not compute.
"""
import json
import math

import numpy as np
import pytest

from data_utils.corpora import CORPORA, Trials, evaluate_score_file, get_corpus
from utils.errors import InputError
from utils.evaluation.metrics import (
    compute_a_dcf,
    compute_act_dcf,
    compute_cllr,
    compute_min_dcf,
    compute_min_tdcf_revised,
    compute_t_eer,
    compute_tdcf_c012,
)

REL = 1e-9


def assert_figure(got, want, where: str):
    if want is None:
        assert got is None, f"{where}: expected not computed (null), got {got}"
    else:
        assert got is not None, f"{where}: expected {want}, got None"
        assert got == pytest.approx(want, rel=REL, abs=0), where


def assert_table(table: dict, want_values: list, where: str, rows=None, columns=None):
    if rows is not None:
        assert table["rows"] == rows, where
    if columns is not None:
        assert table["columns"] == columns, where
    assert len(table["values"]) == len(want_values), where
    for r, (got_row, want_row) in enumerate(zip(table["values"], want_values)):
        assert len(got_row) == len(want_row), where
        for c, (got, want) in enumerate(zip(got_row, want_row)):
            assert_figure(got, want, f"{where} [{table['rows'][r]}, {table['columns'][c]}]")


@pytest.fixture(scope="module")
def corpora_dir(reference_dir):
    return reference_dir / "corpora"


def golden(corpora_dir, folder: str) -> dict:
    return json.loads((corpora_dir / folder / "metrics_golden.json").read_text())


# ---- golden figures ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("subset", ["eval", "progress", "hidden"])
def test_asvspoof2021_la_matches_the_official_packages(corpora_dir, subset):
    want = golden(corpora_dir, "asvspoof2021_LA")
    folder = corpora_dir / "asvspoof2021_LA"
    got = evaluate_score_file("asvspoof2021_la", folder / "score.txt", folder / "keys", subset)
    full = want["full_package"][subset]
    rows, columns = want["table_rows_factor1_attack"], want["table_cols_factor2_codec"]
    assert got["subset"] == subset
    assert_table(got["tables"]["eer_percent"], full["eer_percent"], f"LA {subset} EER", rows, columns)
    assert_table(got["tables"]["min_tdcf"], full["min_tdcf"], f"LA {subset} min t-DCF", rows, columns)
    assert got["tdcf_c012"] == pytest.approx(full["pooled_C012"], rel=REL, abs=0)
    assert_figure(got["eer_percent"], full["eer_percent"][-1][-1], "pooled EER")
    assert_figure(got["min_tdcf"], full["min_tdcf"][-1][-1], "pooled min t-DCF")
    if subset in want["stage1_package"]:  # stage 1 (= SSL_Anti-spoofing's evaluate_2021_LA.py): pooled only
        assert_figure(got["eer_percent"], want["stage1_package"][subset]["eer_percent"], "stage-1 EER")
        assert_figure(got["min_tdcf"], want["stage1_package"][subset]["min_tdcf"], "stage-1 min t-DCF")


def test_asvspoof2021_la_defaults_to_eval_and_accepts_the_track_folder(corpora_dir):
    folder = corpora_dir / "asvspoof2021_LA"
    want = golden(corpora_dir, "asvspoof2021_LA")["headline"]
    for keys in (folder / "keys", folder / "keys" / "LA", folder / "keys" / "LA" / "CM" / "trial_metadata.txt"):
        got = evaluate_score_file("asvspoof2021_la", folder / "score.txt", keys)
        assert got["subset"] == "eval"
        assert_figure(got["eer_percent"], want["eval_pooled_eer_percent"], str(keys))
        assert_figure(got["min_tdcf"], want["eval_pooled_min_tdcf"], str(keys))


@pytest.mark.parametrize("subset", ["eval", "progress", "hidden"])
def test_asvspoof2021_df_matches_the_official_packages(corpora_dir, subset):
    want = golden(corpora_dir, "asvspoof2021_DF")
    folder = corpora_dir / "asvspoof2021_DF"
    got = evaluate_score_file("asvspoof2021_df", folder / "score.txt", folder / "keys", subset)
    assert_table(got["tables"]["eer_percent"], want["full_package"][subset]["eer_percent"], f"DF {subset}",
                 want["table_rows_factor1_vocoder"], want["table_cols_factor2_compression"])
    assert "min_tdcf" not in got  # DF has no ASV: EER only
    if subset in want["stage1_package"]:
        assert_figure(got["eer_percent"], want["stage1_package"][subset]["eer_percent"], "stage-1 EER")


def test_in_the_wild_matches_the_asvspoof_eer(corpora_dir):
    want = golden(corpora_dir, "in_the_wild")
    folder = corpora_dir / "in_the_wild"
    got = evaluate_score_file("in_the_wild", folder / "score.txt", folder / "meta.csv")
    assert_figure(got["eer_percent"], want["eer_percent"], "ITW EER")
    assert_figure(got["eer_threshold"], want["threshold"], "ITW threshold")
    assert (got["n_bonafide"], got["n_spoof"]) == (want["n_bonafide"], want["n_spoof"])


TRACK1_NAMES = {"minDCF": "min_dcf", "eer_percent": "eer_percent", "cllr_bits": "cllr_bits", "actDCF": "act_dcf"}


@pytest.mark.parametrize("keys", ["ASVspoof5.eval.track_1.tsv", "cm_fullkey.txt", "cm_key.tsv"])
def test_asvspoof5_track1_matches_the_official_package(corpora_dir, keys):
    want = golden(corpora_dir, "asvspoof5_track1")
    folder = corpora_dir / "asvspoof5_track1"
    got = evaluate_score_file("asvspoof5", folder / "cm_score.tsv", folder / keys)
    for official, ours in TRACK1_NAMES.items():
        assert_figure(got[ours], want["pooled"][official], f"pooled {official}")
    if keys == "cm_key.tsv":  # filename and cm-label only: no conditions, no tables
        assert got["tables"] == {}
        return
    for official, ours in TRACK1_NAMES.items():
        assert_table(got["tables"][ours], want["full"][official], f"track 1 {official} ({keys})",
                     want["full"]["rows_attack"], want["full"]["cols_codec"])


@pytest.mark.parametrize("keys", ["ASVspoof5.eval.track_2.trial.tsv", "sasv_key.tsv", "sasv_fullkey.txt"])
def test_asvspoof5_track2_matches_the_official_package(corpora_dir, keys):
    want = golden(corpora_dir, "asvspoof5_track2")
    folder = corpora_dir / "asvspoof5_track2"
    got = evaluate_score_file("asvspoof5_sasv", folder / "sasv_score.tsv", folder / keys,
                              asv_scores=folder / "asv_org_score.tsv")
    for name in ("a_dcf", "min_tdcf", "t_eer_percent"):
        assert_figure(got[name], want["pooled"][name], f"pooled {name} ({keys})")
    assert_figure(got["a_dcf"], want["pooled"]["a_dcf_t2_single"], "t2_single a-DCF")
    if keys == "sasv_fullkey.txt":  # attack and codec: the tables of evaluation_full.py --asv_org
        table = want["full_with_asv_org"]
        for name in ("a_dcf", "min_tdcf", "t_eer_percent"):
            assert_table(got["tables"][name], table[name], f"track 2 {name}", table["rows_attack"],
                         table["cols_codec"])


def test_asvspoof5_track2_tables_without_organiser_asv_use_the_fixed_rates(corpora_dir):
    folder = corpora_dir / "asvspoof5_track2"
    got = evaluate_score_file("asvspoof5_sasv", folder / "sasv_score.tsv", folder / "sasv_fullkey.txt")
    # The pooled cell is evaluation.py's pooled figure.
    want = golden(corpora_dir, "asvspoof5_track2")["pooled"]["min_tdcf"]
    assert_figure(got["tables"]["min_tdcf"]["values"][0][0], want, "pooled cell")


# ---- score files that do not match the keys ----------------------------------------------------------------

def write(path, text: str):
    path.write_text(text)
    return path


@pytest.fixture
def itw_keys(tmp_path):
    return write(tmp_path / "meta.csv", "file,speaker,label\n0.wav,Alec Guinness,spoof\n1.wav,Joe Biden,bona-fide\n"
                                        "2.wav,Joe Biden,bona-fide\n3.wav,Ayn Rand,spoof\n4.wav,Ayn Rand,spoof\n")


def read_itw(tmp_path, itw_keys, text: str):
    corpus = get_corpus("in_the_wild")
    return corpus.read_scores(write(tmp_path / "score.txt", text), corpus.read_keys(itw_keys))


FULL = "0.wav 0.1\n1.wav 2.0\n2.wav 1.5\n3.wav -1\n4.wav -0.5\n"


def test_a_matching_score_file_reads_in_key_order(tmp_path, itw_keys):
    text = "".join(reversed(FULL.splitlines(keepends=True)))
    np.testing.assert_array_equal(read_itw(tmp_path, itw_keys, text), [0.1, 2.0, 1.5, -1, -0.5])


@pytest.mark.parametrize("text, message", [
    ("0.wav 0.1\n1.wav 2.0\n", r"score\.txt: 3 of the 5 trials of .*meta\.csv are missing .*: 2\.wav, 3\.wav, 4\.wav"),
    (FULL + "9.wav 1\n8.wav 2\n", r"score\.txt: 2 trial id\(s\) that are not in .*meta\.csv: 9\.wav, 8\.wav"),
    (FULL + "1.wav 2.0\n", r"score\.txt: 1 duplicated trial id\(s\) in this score file: 1\.wav \(lines 2 and 6\)"),
    (FULL.replace("0.1", "nan").replace("-0.5", "inf"), r"score\.txt: 2 score\(s\) are NaN or inf: 0\.wav \(line 1\), "
                                                         r"4\.wav \(line 5\)"),
    (FULL.replace("0.1", "high"), r"score\.txt, line 1: score 'high' is not a number"),
    (FULL.replace("0.wav 0.1", "0.wav A07 0.1"), r"score\.txt, line 1: expected 2 fields \(file score\), found 3"),
    ("", r"score\.txt: no rows"),
])
def test_a_score_file_that_does_not_match_its_keys_is_refused(tmp_path, itw_keys, text, message):
    with pytest.raises(InputError, match=message):
        read_itw(tmp_path, itw_keys, text)


def test_a_missing_score_file_is_named(tmp_path, itw_keys):
    corpus = get_corpus("in_the_wild")
    with pytest.raises(InputError, match=r"score file not found: .*nowhere\.txt"):
        corpus.read_scores(tmp_path / "nowhere.txt", corpus.read_keys(itw_keys))


def test_unknown_labels_in_keys_are_refused(tmp_path):
    keys = write(tmp_path / "meta.csv", "file,speaker,label\n0.wav,A,bonafide\n1.wav,B,spoof\n2.wav,C,fake\n")
    with pytest.raises(InputError, match=r"meta\.csv: 2 trial\(s\) with an unknown label \(expected bona-fide / "
                                         r"spoof\): 0\.wav \(line 2: 'bonafide'\), 2\.wav \(line 4: 'fake'\)"):
        get_corpus("in_the_wild").read_keys(keys)


def test_duplicated_ids_in_keys_are_refused(tmp_path):
    keys = write(tmp_path / "p.tsv", "E_1 E_0000000001 F - - - - bonafide bonafide -\n"
                                     "E_1 E_0000000001 F - - - - bonafide bonafide -\n")
    with pytest.raises(InputError, match=r"p\.tsv: 1 duplicated trial id\(s\) in this key file: "
                                         r"E_0000000001 \(lines 1 and 2\)"):
        get_corpus("asvspoof5").read_keys(keys)


PROTOCOL_T1 = ("E_1 E_0000000001 F - - - - bonafide bonafide -\nE_1 E_0000000002 F C01 1 E_9 AC1 A17 spoof -\n"
               "E_2 E_0000000003 M C01 2 E_8 AC2 A18 spoof -\nE_2 E_0000000004 M C01 - - - bonafide bonafide -\n")


def test_asvspoof5_score_file_needs_its_tab_separated_header(tmp_path):
    corpus = get_corpus("asvspoof5")
    trials = corpus.read_keys(write(tmp_path / "protocol.tsv", PROTOCOL_T1))
    with pytest.raises(InputError, match=r"cm\.tsv, line 1: the header 'filename cm-score' lacks column\(s\) "
                                         r"filename, cm-score \(expected a TAB-separated header"):
        corpus.read_scores(write(tmp_path / "cm.tsv", "filename cm-score\nE_0000000001 1.0\n"), trials)
    with pytest.raises(InputError, match=r"cm\.tsv, line 1: the header .*E_0000000001.* lacks column"):
        corpus.read_scores(write(tmp_path / "cm.tsv", "E_0000000001\t1.0\n"), trials)


def test_sasv_score_columns_are_all_or_nothing(tmp_path):
    corpus = get_corpus("asvspoof5_sasv")
    trials = corpus.read_keys(write(tmp_path / "trial.tsv", "E_1 E_01 F bonafide target\nE_1 E_02 F bonafide "
                                                            "nontarget\nE_1 E_03 F A17 spoof\n"))
    header = "spk\tfilename\tcm-score\tasv-score\tsasv-score\n"
    partial = header + "E_1\tE_01\t1\t2\t-\nE_1\tE_02\t0\t-\t-\nE_1\tE_03\t-1\t-\t-\n"
    with pytest.raises(InputError, match=r"sasv\.tsv: asv-score is '-' for 2 of 3 trials; give every score or none"):
        corpus.read_scores(write(tmp_path / "sasv.tsv", partial), trials)
    with pytest.raises(InputError, match=r"sasv\.tsv: 1 score\(s\) are NaN or inf: E_1 E_02 \(line 3\)"):
        corpus.read_scores(write(tmp_path / "sasv.tsv", header + "E_1\tE_01\t1\t2\t3\nE_1\tE_02\tnan\t2\t3\n"
                                                                  "E_1\tE_03\t1\t2\t3\n"), trials)


def test_2021_asv_scores_must_keep_the_key_order(tmp_path, corpora_dir):
    folder = corpora_dir / "asvspoof2021_LA"
    asv_lines = (folder / "keys/LA/ASV/ASVTorch_Kaldi/score.txt").read_text().splitlines(keepends=True)
    swapped = write(tmp_path / "asv.txt", "".join([asv_lines[1], asv_lines[0]] + asv_lines[2:]))
    with pytest.raises(InputError, match=r"asv\.txt, line 1: 2 row\(s\) differ from .*trial_metadata\.txt \(joined "
                                         r"row by row; keep its order\)"):
        evaluate_score_file("asvspoof2021_la", folder / "score.txt", folder / "keys", asv_scores=swapped)
    short = write(tmp_path / "asv.txt", "".join(asv_lines[:-1]))
    with pytest.raises(InputError, match=rf"asv\.txt: {len(asv_lines) - 1} rows for the {len(asv_lines)} trials"):
        evaluate_score_file("asvspoof2021_la", folder / "score.txt", folder / "keys", asv_scores=short)


def test_a_2021_score_file_must_cover_every_subset(tmp_path, corpora_dir):
    folder = corpora_dir / "asvspoof2021_DF"
    trials = get_corpus("asvspoof2021_df").read_keys(folder / "keys")  # all subsets; the metrics use eval
    in_eval = set(trials.ids[trials.in_subset].tolist())
    eval_only = write(tmp_path / "score.txt", "".join(line for line in (folder / "score.txt").read_text().splitlines(
        keepends=True) if line.split()[0] in in_eval))
    with pytest.raises(InputError, match=r"trials of .* are missing \(a score file needs every trial, all subsets\)"):
        evaluate_score_file("asvspoof2021_df", eval_only, folder / "keys")


def test_names_and_subsets_are_checked(corpora_dir, tmp_path, itw_keys):
    with pytest.raises(InputError, match=r"unknown corpus 'asvspoof2021' \(known: asvspoof2021_la, asvspoof2021_df"):
        get_corpus("asvspoof2021")
    with pytest.raises(InputError, match=r"asvspoof2021_la: subset must be one of eval, progress, hidden, got 'dev'"):
        get_corpus("asvspoof2021_la").read_keys(corpora_dir / "asvspoof2021_LA" / "keys", "dev")
    with pytest.raises(InputError, match=r"in_the_wild has no subsets"):
        get_corpus("in_the_wild").read_keys(itw_keys, "eval")
    with pytest.raises(InputError, match=r"not an ASVspoof 2021 LA keys folder"):
        get_corpus("asvspoof2021_la").read_keys(tmp_path)


# ---- cells the official code does not compute --------------------------------------------------------------

def la_keys(tmp_path, cm_rows: list[str], asv_rows: list[str], asv_scores: list[float]):
    (tmp_path / "keys/LA/CM").mkdir(parents=True)
    (tmp_path / "keys/LA/ASV/ASVTorch_Kaldi").mkdir(parents=True)
    write(tmp_path / "keys/LA/CM/trial_metadata.txt", "".join(r + "\n" for r in cm_rows))
    write(tmp_path / "keys/LA/ASV/trial_metadata.txt", "".join(r + "\n" for r in asv_rows))
    write(tmp_path / "keys/LA/ASV/ASVTorch_Kaldi/score.txt",
          "".join(f"{r.split()[0]} {r.split()[1]} {s}\n" for r, s in zip(asv_rows, asv_scores)))
    return tmp_path / "keys"


def test_cells_the_official_code_would_abort_on_are_none(tmp_path):
    cm = ["S1 T1 none ita_tx bonafide bonafide notrim eval", "S1 T2 none ita_tx A07 spoof notrim eval",
          "S1 T3 alaw ita_tx bonafide bonafide notrim eval", "S1 T4 alaw ita_tx A08 spoof notrim eval",
          "S1 T5 alaw ita_tx A08 spoof notrim eval"]
    asv = ["S1-none T1-none none ita_tx bonafide target notrim eval",
           "S2-none T1-none none ita_tx bonafide nontarget notrim eval",
           "S1 LA2021-T2 none ita_tx A07 spoof notrim eval",
           "S1-alaw T3-alaw alaw ita_tx bonafide target notrim eval"]
    keys = la_keys(tmp_path, cm, asv, [2.0, -1.0, 0.5, 1.0])
    # 'none' has two distinct scores (the official code exits), 'alaw' three; no ASV spoof or non-target in alaw.
    scores = write(tmp_path / "score.txt", "T1 1\nT2 0\nT3 3\nT4 2\nT5 1\n")
    got = evaluate_score_file("asvspoof2021_la", scores, keys)
    eer, tdcf = got["tables"]["eer_percent"], got["tables"]["min_tdcf"]
    a07, a08, c1, c2 = eer["rows"].index("A07"), eer["rows"].index("A08"), eer["columns"].index("C1"), 1
    assert eer["values"][a07][c1] is None and tdcf["values"][a07][c1] is None  # < 3 distinct scores
    assert eer["values"][a07][c2] is None  # no A07 spoof in alaw
    assert eer["values"][a08][c2] == 0.0 and tdcf["values"][a08][c2] is None  # no ASV spoof/non-target in alaw
    assert eer["values"][eer["rows"].index("A09")][-1] is None  # an attack absent from the subset
    assert got["eer_percent"] is not None and got["min_tdcf"] is not None


def test_sasv_without_asv_or_sasv_scores_gives_what_a_cm_alone_can(tmp_path, corpora_dir):
    folder = corpora_dir / "asvspoof5_track2"
    corpus = get_corpus("asvspoof5_sasv")
    trials = corpus.read_keys(folder / "ASVspoof5.eval.track_2.trial.tsv")
    full = corpus.read_scores(folder / "sasv_score.tsv", trials)
    cm_only = tmp_path / "cm_only.tsv"
    corpus.write_scores(cm_only, trials.ids, full[:, 0])
    got = evaluate_score_file("asvspoof5_sasv", cm_only, folder / "ASVspoof5.eval.track_2.trial.tsv")
    want = golden(corpora_dir, "asvspoof5_track2")["pooled"]
    assert got["a_dcf"] is None and got["t_eer_percent"] is None
    assert_figure(got["min_tdcf"], want["min_tdcf"], "CM-only min t-DCF (fixed ASV rates)")


# ---- writing score files, audio paths ----------------------------------------------------------------------

@pytest.mark.parametrize("name, keys", [
    ("asvspoof2021_la", "asvspoof2021_LA/keys"), ("asvspoof2021_df", "asvspoof2021_DF/keys"),
    ("in_the_wild", "in_the_wild/meta.csv"), ("asvspoof5", "asvspoof5_track1/ASVspoof5.eval.track_1.tsv"),
    ("asvspoof5_sasv", "asvspoof5_track2/sasv_fullkey.txt"),
])
def test_written_score_files_read_back_equal(tmp_path, corpora_dir, name, keys):
    corpus = CORPORA[name]
    trials = corpus.read_keys(corpora_dir / keys)
    scores = np.random.default_rng(0).normal(size=(len(trials), 3) if name == "asvspoof5_sasv" else len(trials))
    order = np.random.default_rng(1).permutation(len(trials))  # a score file may list trials in any order
    corpus.write_scores(tmp_path / "scores", trials.ids[order], scores[order])
    np.testing.assert_array_equal(corpus.read_scores(tmp_path / "scores", trials), scores)


def test_write_refuses_non_finite_scores(tmp_path):
    with pytest.raises(InputError, match=r"1 of 2 scores are NaN or inf \(trials b\); not writing"):
        get_corpus("in_the_wild").write_scores(tmp_path / "s.txt", ["a", "b"], [1.0, math.nan])
    assert not (tmp_path / "s.txt").exists()


def test_audio_paths_under_the_release_root(tmp_path):
    la, df = get_corpus("asvspoof2021_la"), get_corpus("asvspoof2021_df")
    assert la.audio_paths(tmp_path, ["LA_E_1"]) == [tmp_path / "ASVspoof2021_LA_eval/flac/LA_E_1.flac"]
    assert df.audio_paths(tmp_path, ["DF_E_2"]) == [tmp_path / "ASVspoof2021_DF_eval/flac/DF_E_2.flac"]
    assert get_corpus("in_the_wild").audio_paths(tmp_path, ["0.wav"]) == [tmp_path / "release_in_the_wild/0.wav"]
    assert get_corpus("asvspoof5").audio_paths(tmp_path, ["E_01"]) == [tmp_path / "flac_E_eval/E_01.flac"]
    (tmp_path / "other" / "flac_E").mkdir(parents=True)  # the folder name of some copies
    other = get_corpus("asvspoof5_sasv").audio_paths(tmp_path / "other", ["E_01"])
    assert other == [tmp_path / "other/flac_E/E_01.flac"]
    trials = get_corpus("asvspoof5_sasv").read_keys(write(tmp_path / "t.tsv", "E_1 E_01 F bonafide target\n"))
    assert (trials.ids.tolist(), trials.audio_ids.tolist()) == (["E_1 E_01"], ["E_01"])


# ---- the metric functions on cases worked by hand ------------------------------------------------------------

def test_revised_tdcf_of_a_perfect_cm_is_the_asv_floor():
    c0, c1, c2 = compute_tdcf_c012(pfa_asv=0.1, pmiss_asv=0.05, pfa_spoof_asv=0.5)
    assert compute_min_tdcf_revised([2.0, 3.0], [0.0, 1.0], c0, c1, c2) == pytest.approx(c0 / (c0 + min(c1, c2)))
    assert compute_min_tdcf_revised([0.0, 1.0], [2.0, 3.0], c0, c1, c2) == pytest.approx(1.0)
    with pytest.raises(InputError, match="only 2 distinct"):
        compute_min_tdcf_revised([1.0, 1.0], [0.0], c0, c1, c2)


def test_track1_metrics_by_hand():
    assert compute_min_dcf([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert compute_cllr([0.0], [0.0]) == pytest.approx(1.0)  # LLR 0 everywhere: one bit
    tau = -math.log(1.9)
    # At the threshold a bona fide score is accepted and a spoof score counts as a false alarm.
    assert compute_act_dcf([tau], [tau - 1]) == 0.0
    assert compute_act_dcf([tau], [tau]) == pytest.approx(0.5 * 1 / 0.5)


def test_track2_metrics_by_hand():
    assert compute_a_dcf([3.0, 4.0], [1.0], [0.0, 2.0]) == 0.0
    # Perfect CM and ASV: the tandem errs nowhere.
    assert compute_t_eer([5.0], [4.0], [0.0, 1.0], [9.0], [1.0], [2.0, 3.0]) == 0.0


def test_trials_check_their_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        Trials(ids=["a", "b"], labels=["bonafide"], audio_ids=["a", "b"])


# ---- what the official packages accept beyond the reference files ---------------------------------------------

def test_track2_dummy_trials_are_joined_then_dropped(tmp_path, corpora_dir):
    # evaluation_full.py joins the scores to the full key, then drops the rows tagged dummy: a submission and
    # the organisers' ASV file may hold dummy trials, and the figures are those without them.
    folder = corpora_dir / "asvspoof5_track2"
    key = write(tmp_path / "key.txt", (folder / "sasv_fullkey.txt").read_text()
                + "E_9999 E_0000009999 spoof spoof A23 C07 dummy\nE_9998 E_0000009998 bonafide target bonafide - dummy\n")
    scores = write(tmp_path / "sasv.tsv", (folder / "sasv_score.tsv").read_text()
                   + "E_9999\tE_0000009999\t5.0\t5.0\t5.0\n")  # one dummy trial scored, the other not
    asv = write(tmp_path / "asv.tsv", (folder / "asv_org_score.tsv").read_text() + "E_9999\tE_0000009999\t3.0\n")
    got = evaluate_score_file("asvspoof5_sasv", scores, key, asv_scores=asv)
    want = golden(corpora_dir, "asvspoof5_track2")
    for name in ("a_dcf", "min_tdcf", "t_eer_percent"):
        assert_figure(got[name], want["pooled"][name], f"pooled {name}")
        table = want["full_with_asv_org"]
        assert_table(got["tables"][name], table[name], f"track 2 {name}", table["rows_attack"], table["cols_codec"])
    assert got["n_spoof"] == get_corpus("asvspoof5_sasv").read_keys(folder / "sasv_fullkey.txt").labels.tolist().count(
        "spoof")
    with pytest.raises(InputError, match=r"1 trial id\(s\) that are not in .*: E_7 E_7"):  # not in the key at all
        evaluate_score_file("asvspoof5_sasv", write(tmp_path / "x.tsv", scores.read_text() + "E_7\tE_7\t1\t1\t1\n"), key)


def test_2021_asv_scores_without_the_key_suffixes_pair_by_row(tmp_path, corpora_dir, capsys):
    # The 2021 package pairs ASV scores with the ASV key by row; its notebook's user file is
    # "LA_0007 LA_E_5013670 -9.836706", without the key's "-codec-trans" suffixes and "LA2021-" prefixes.
    folder = corpora_dir / "asvspoof2021_LA"
    lines = (folder / "keys/LA/ASV/ASVTorch_Kaldi/score.txt").read_text().splitlines()
    plain = ["{} {} {}".format(*(x.removeprefix("LA2021-").split("-")[0] for x in line.split()[:2]), line.split()[2])
             for line in lines]
    assert plain != lines
    asv = write(tmp_path / "asv.txt", "\n".join(plain) + "\n")
    got = evaluate_score_file("asvspoof2021_la", folder / "score.txt", folder / "keys", asv_scores=asv)
    summary = json.loads((corpora_dir / "summary.json").read_text())["asvspoof2021_LA"]
    assert_figure(got["min_tdcf"], summary["eval_pooled_min_tdcf"], "pooled min t-DCF")
    assert "paired row by row" in capsys.readouterr().out  # says what was done
    swapped = write(tmp_path / "asv.txt", "\n".join([plain[1], plain[0]] + plain[2:]) + "\n")
    with pytest.raises(InputError, match=r"asv\.txt, line 1: 2 row\(s\) differ from"):  # ids still checked
        evaluate_score_file("asvspoof2021_la", folder / "score.txt", folder / "keys", asv_scores=swapped)


def test_2021_la_cell_with_a_negative_c1_is_reported(tmp_path):
    # An ASV system poor enough in one condition (EER 90 %) makes C1 negative there; the full package's
    # eval_wrapper.get_mintDCF_eer still computes the cell: min_k (C0 + C1 Pmiss + C2 Pfa) / (C0 + min(C1, C2)).
    from data_utils.corpora.asvspoof2021 import AsvScores
    from utils.evaluation.metrics import asv_error_rates, compute_det_curve, compute_tdcf_c012
    bonafide, spoof = np.array([1.0, 2.0, 3.0, 0.2]), np.array([0.0, 1.5, -1.0, 2.5])
    cm = Trials(ids=[f"c{i}" for i in range(8)], labels=["bonafide"] * 4 + ["spoof"] * 4, audio_ids=[""] * 8,
                factors={"attack": ["bonafide"] * 4 + ["A07"] * 4, "codec": ["none"] * 8, "subset": ["eval"] * 8},
                subset="eval")
    tar, non, spf = np.arange(10.0), np.arange(10.0, 20.0), np.array([5.0, 15.0])  # targets below non-targets
    labels = ["target"] * 10 + ["nontarget"] * 10 + ["spoof"] * 2
    asv = Trials(ids=[f"a{i}" for i in range(22)], labels=labels, audio_ids=[""] * 22,
                 factors={"attack": ["bonafide"] * 20 + ["A07"] * 2, "codec": ["none"] * 22, "subset": ["eval"] * 22},
                 subset="eval")
    got = get_corpus("asvspoof2021_la").metrics(np.concatenate([bonafide, spoof]), cm,
                                                AsvScores(asv, np.concatenate([tar, non, spf])))
    pfa, pmiss, _, pfa_spoof = asv_error_rates(tar, non, spf)
    c0, c1, c2 = compute_tdcf_c012(pfa, pmiss, pfa_spoof)
    assert c1 < 0
    pmiss_cm, pfa_cm, _ = compute_det_curve(bonafide, spoof)
    want = np.min((c0 + c1 * pmiss_cm + c2 * pfa_cm) / (c0 + min(c1, c2)))
    assert_figure(got["min_tdcf"], want, "pooled min t-DCF")
    assert_figure(got["tables"]["min_tdcf"]["values"][0][0], want, "A07 x C1")


def test_a_new_corpus_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    # Adding a corpus: a Corpus subclass (here, a two-column key file) and its entry in CORPORA; scoring,
    # evaluate_score_file and the report need nothing else.
    from data_utils.corpora import Corpus, registry
    from data_utils.corpora.common import check_key_rows, counts, join_scores, read_rows, write_id_score_lines
    from utils.evaluation.metrics import compute_eer

    class Tiny(Corpus):
        name, audio_dirs = "tiny", ("wav",)

        def read_keys(self, keys_path, subset=None):
            rows = read_rows(keys_path, "tiny key file", ("file", "label"))
            check_key_rows(rows, rows.column("file"), rows.column("label"), ("bonafide", "spoof"))
            return Trials(ids=rows.column("file"), labels=rows.column("label"), audio_ids=rows.column("file"),
                          path=rows.path)

        def read_scores(self, path, trials):
            rows = read_rows(path, "tiny score file", ("file", "score"))
            return join_scores(rows, rows.column("file"), trials, ("score",))[:, 0]

        def write_scores(self, path, ids, scores):
            write_id_score_lines(path, ids, scores)

        def metrics(self, scores, trials, extra=None):
            bona, spoof = scores[trials.labels == "bonafide"], scores[trials.labels == "spoof"]
            return {"corpus": self.name, "subset": None, **counts(trials),
                    "eer_percent": 100 * compute_eer(bona, spoof)[0], "tables": {}}

    monkeypatch.setitem(registry.CORPORA, "tiny", Tiny())
    keys = write(tmp_path / "keys.txt", "a bonafide\nb bonafide\nc spoof\nd spoof\n")
    get_corpus("tiny").write_scores(tmp_path / "s.txt", ["d", "c", "b", "a"], [0.1, 0.3, 0.2, 0.9])
    got = evaluate_score_file("tiny", tmp_path / "s.txt", keys)
    assert got["eer_percent"] == pytest.approx(50.0) and got["n_bonafide"] == 2
    assert "EER (%):" in get_corpus("tiny").report(got)
    with pytest.raises(InputError, match="corpus 'tiny' has no training splits"):
        get_corpus("tiny").split_trials(tmp_path, "train")
