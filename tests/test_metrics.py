"""Metrics equal the published evaluation's, bit for bit; score files read and write back exactly."""
import json
import math

import numpy as np
import pytest

from utils.errors import InputError
from utils.evaluation import metrics
from utils.evaluation.metrics import (T_EER_SEARCHES, check_scores, compute_det_curve, compute_eer, compute_min_tdcf,
                           compute_t_eer, per_attack_eer)
from utils.evaluation.score_files import CMScores, compute_metrics, read_asv_scores, read_cm_scores, write_cm_scores

LA_SCORES = "asvspoof2019_LA_scores"


def test_det_curve_keeps_bonafide_first_in_ties():
    # Pooled and sorted stably: 0 (spoof), 1 (bona fide), 1 (spoof), 2 (bona fide).
    frr, far, thresholds = compute_det_curve([1.0, 2.0], [0.0, 1.0])
    np.testing.assert_array_equal(frr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(far, [1, 0.5, 0.5, 0, 0])
    np.testing.assert_array_equal(thresholds, [-0.001, 0, 1, 1, 2])
    # The tie decides the EER: spoof-first ordering would give 0 here.
    assert compute_eer([1.0, 2.0], [0.0, 1.0]) == (0.5, 1.0)


def test_eer_of_separated_and_of_reversed_scores():
    assert compute_eer([2.0, 3.0], [0.0, 1.0]) == (0.0, 1.0)  # threshold: the highest score rejected
    assert compute_eer([0.0, 1.0], [2.0, 3.0])[0] == 1.0


def test_per_attack_eer_uses_the_attack_ids_found_sorted():
    bonafide = [1.0, 2.0, 3.0]
    spoof = np.array([0.5, 2.5, -1.0, 0.0])
    attacks = ["zeta", "A02", "zeta", "A02"]
    result = per_attack_eer(bonafide, spoof, attacks)
    assert list(result) == ["A02", "zeta"]
    assert result["A02"] == 100 * compute_eer(bonafide, spoof[[1, 3]])[0]
    assert result["zeta"] == 0.0


def test_min_tdcf_of_a_perfect_cm_is_zero():
    asv_target, asv_nontarget, asv_spoof = [5.0, 6.0, 7.0], [0.0, 1.0, 2.0], [3.0, 4.0, 6.5]
    assert compute_min_tdcf([2.0, 3.0], [0.0, 1.0], asv_target, asv_nontarget, asv_spoof) == 0.0
    assert compute_min_tdcf([0.0, 1.0], [2.0, 3.0], asv_target, asv_nontarget, asv_spoof) == 1.0


def test_golden_metrics(reference_dir):
    golden = json.loads((reference_dir / "metrics_golden.json").read_text())
    metrics = compute_metrics(read_cm_scores(reference_dir / "cm_scores.txt"),
                              read_asv_scores(reference_dir / "asv_scores.txt"))
    assert metrics["eer_percent"] == pytest.approx(golden["eer_percent"], rel=1e-9, abs=0)
    assert metrics["min_tdcf"] == pytest.approx(golden["min_tdcf"], rel=1e-9, abs=0)
    assert list(metrics["per_attack_eer_percent"]) == list(golden["per_attack_eer_percent"])
    for attack, eer in golden["per_attack_eer_percent"].items():
        assert metrics["per_attack_eer_percent"][attack] == pytest.approx(eer, rel=1e-9, abs=1e-12), attack


def test_published_aasist_eval_scores(reference_dir):
    # The paper's AASIST figures: EER 0.83 %, min t-DCF 0.0275 (ASVspoof 2019 LA eval).
    metrics = compute_metrics(read_cm_scores(reference_dir / LA_SCORES / "aasist_published_eval_scores.txt"),
                              read_asv_scores(reference_dir / LA_SCORES / "ASVspoof2019.LA.asv.eval.gi.trl.scores.txt"))
    assert f"{metrics['eer_percent']:.9f}" == "0.829511226"
    assert f"{metrics['min_tdcf']:.9f}" == "0.027529478"
    assert list(metrics["per_attack_eer_percent"]) == [f"A{i:02d}" for i in range(7, 20)]


def test_published_aasist_eer_threshold(reference_dir):
    # The default decision threshold of scripts/infer.py and the README, quoted to 5 decimals.
    metrics = compute_metrics(read_cm_scores(reference_dir / LA_SCORES / "aasist_published_eval_scores.txt"))
    assert f"{metrics['eer_threshold']:.5f}" == "1.49343"


def test_cm_score_file_round_trip(tmp_path):
    scores = [0.1 + 0.2, -3.4100000000000001, float(np.float32(1.2345678)), 1e-300]
    keys = ["bonafide", "spoof", "spoof", "bonafide"]
    cm = CMScores(["u1", "u2", "u3", "u4"], ["-", "A11", "A11", "-"], keys, scores)
    write_cm_scores(tmp_path / "scores.txt", cm)
    back = read_cm_scores(tmp_path / "scores.txt")
    for field in ("utt_ids", "sources", "keys", "scores"):
        np.testing.assert_array_equal(getattr(back, field), getattr(cm, field))
    assert (tmp_path / "scores.txt").read_text().splitlines()[1] == "u2 A11 spoof -3.41"


def test_write_refuses_white_space_in_ids(tmp_path):
    cm = CMScores(["u 1"], ["-"], ["bonafide"], [0.0])
    with pytest.raises(InputError, match="utterance id 'u 1'"):
        write_cm_scores(tmp_path / "scores.txt", cm)
    assert not (tmp_path / "scores.txt").exists()


def test_write_refuses_non_finite_scores_naming_the_utterances(tmp_path):
    scores = [0.5, math.nan, 1.0, math.inf, -math.inf, math.nan, 2.0]
    cm = CMScores([f"u{i}" for i in range(7)], ["-"] * 7, ["bonafide"] * 7, scores)
    with pytest.raises(InputError, match=r"4 of 7 scores are NaN or inf \(utterances u1, u3, u4, \.\.\.\); "
                                         r"not writing .*scores\.txt$"):
        write_cm_scores(tmp_path / "scores.txt", cm)
    assert not (tmp_path / "scores.txt").exists()


def test_read_refuses_a_repeated_utterance_id_naming_both_lines(tmp_path):
    # Read twice, the trial would count twice in the EER.
    path = tmp_path / "scores.txt"
    path.write_text("u1 - bonafide 1.5\nu2 A11 spoof -3.4\n\nu1 - bonafide 1.5\n")
    with pytest.raises(InputError, match=r"scores\.txt, line 4: utterance id 'u1' is already on line 1$"):
        read_cm_scores(path)


# Bad arrays: each message names the class and how many scores are at fault.

def test_nan_and_inf_are_counted_by_class():
    with pytest.raises(InputError, match=r"2 of 3 spoof scores are NaN or inf"):
        compute_eer([1.0, 2.0], [0.0, math.nan, math.inf])
    with pytest.raises(InputError, match=r"1 of 3 ASV spoof scores are NaN or inf"):
        compute_min_tdcf([2.0, 3.0], [0.0, 1.0], [5.0, 6.0], [0.0, 1.0], [3.0, math.nan, 4.0])


def test_an_empty_class_is_an_error():
    with pytest.raises(InputError, match="no CM spoof scores"):
        check_scores([], "CM spoof")
    with pytest.raises(InputError, match="no bona fide scores"):
        compute_eer([], [1.0, 2.0])


def test_tdcf_refuses_an_asv_system_worse_than_chance():
    # Every target below every non-target: at its EER threshold the ASV misses 19 of 20 targets
    # and accepts every non-target, so C1 < 0.
    with pytest.raises(InputError, match="t-DCF is undefined"):
        compute_min_tdcf([2.0, 3.0], [0.0, 1.0], np.arange(20.0), np.arange(100.0, 120.0), [3.0, 4.0])


def test_per_attack_eer_checks_lengths():
    with pytest.raises(InputError, match="2 attack ids given for 3 spoof scores"):
        per_attack_eer([1.0, 2.0], [0.0, 0.5, 1.0], ["A01", "A02"])


@pytest.mark.parametrize("bonafide, spoof, n", [([1.0, 1.0], [0.0, 0.0, 0.0], 2), ([1.0], [1.0, 1.0], 1),
                                                ([0.0, 1.0, 1.0], [0.0], 2)])
def test_min_tdcf_refuses_hard_decisions(bonafide, spoof, n):
    # The published evaluation (ASVspoof 2019 compute_tDCF) stops on CM scores with fewer than 3 distinct
    # values ("provide soft CM scores"); the library function refuses them too, never a min t-DCF number.
    asv_target, asv_nontarget, asv_spoof = [5.0, 6.0, 7.0], [0.0, 1.0, 2.0], [3.0, 4.0, 6.5]
    with pytest.raises(InputError, match=f"CM scores take only {n} distinct value"):
        compute_min_tdcf(bonafide, spoof, asv_target, asv_nontarget, asv_spoof)


# ---- t-EER: the official package's accelerated search and the exact one ---------------------------------------

def track2_trials(reference_dir) -> dict[str, np.ndarray]:
    """The reference track 2 trials: CM and ASV scores joined to the full key by (speaker, file)."""
    folder = reference_dir / "corpora" / "asvspoof5_track2"
    score_rows = [line.split("\t") for line in (folder / "sasv_score.tsv").read_text().splitlines()[1:]]
    scores = {(r[0], r[1]): (float(r[2]), float(r[3])) for r in score_rows}
    key_rows = [line.split() for line in (folder / "sasv_fullkey.txt").read_text().splitlines()[1:]]
    cm, asv = np.array([scores[(r[0], r[1])] for r in key_rows]).T
    columns = np.array([r[3:6] for r in key_rows]).T  # asv-label, attack, codec
    return {"cm": cm, "asv": asv, "label": columns[0], "attack": columns[1], "codec": columns[2]}


def t_eer_of(trials: dict, keep, search: str) -> float:
    """t-EER of the trials in ``keep`` (a boolean mask), by class."""
    by_class = [keep & (trials["label"] == c) for c in ("target", "nontarget", "spoof")]
    return compute_t_eer(*(trials["cm"][m] for m in by_class), *(trials["asv"][m] for m in by_class), search=search)


@pytest.mark.parametrize("search", T_EER_SEARCHES)
def test_t_eer_equals_the_official_package_pooled_and_per_cell(reference_dir, search):
    """Below 3000 points on a curve the package's accelerated search is its exact one: both give its figures."""
    want = json.loads((reference_dir / "corpora" / "asvspoof5_track2" / "metrics_golden.json").read_text())
    table = want["full_with_asv_org"]
    trials = track2_trials(reference_dir)
    bonafide = trials["label"] != "spoof"
    for r, attack in enumerate(table["rows_attack"]):
        for c, codec in enumerate(table["cols_codec"]):
            keep = np.ones(trials["cm"].size, bool) if codec == "pooled" else trials["codec"] == codec
            keep &= bonafide | ((trials["attack"] == attack) if attack != "pooled" else True)
            assert t_eer_of(trials, keep, search) == pytest.approx(table["t_eer_percent"][r][c], rel=1e-9, abs=0), \
                (attack, codec)
    assert table["t_eer_percent"][0][0] == want["pooled"]["t_eer_percent"]


def synthetic_tandem(n: int, seed: int = 0) -> list[np.ndarray]:
    """CM and ASV scores of n target, n non-target and 2n spoof trials of moderate quality (about 10 % EERs)."""
    rng = np.random.default_rng(seed)
    cm = [rng.normal(2.5, 1, n), rng.normal(2.5, 1, n), rng.normal(0, 1, 2 * n)]
    asv = [rng.normal(3, 1, n), rng.normal(0, 1, n), rng.normal(1.5, 1, 2 * n)]
    return cm + asv


def test_accelerated_t_eer_is_exact_where_a_curve_has_fewer_than_3000_points():
    # 2999 CM points (2998 trials): the package skips the coarse search however long the ASV curve is.
    rng = np.random.default_rng(1)
    cm = [rng.normal(2, 1, 500), rng.normal(2, 1, 499), rng.normal(0, 1, 1999)]
    asv = [rng.normal(3, 1, 3000), rng.normal(0, 1, 3000), rng.normal(1.5, 1, 3000)]
    assert compute_t_eer(*cm, *asv) == compute_t_eer(*cm, *asv, search="exact")


def test_accelerated_t_eer_searches_a_coarse_grid_then_a_window(monkeypatch):
    """As the package's compute_teer_accelerated: the exact search on every (len // 3000)-th point of each
    curve, then on the 1600 points either side of the coarse crossing; on well-behaved scores it agrees with
    the exact search over every pair."""
    scores = synthetic_tandem(2000)  # 8001 points on each curve: step 2
    calls = []
    search = metrics._t_eer_search

    def spy(cm, asv):
        found = search(cm, asv)
        calls.append((cm[0].size, asv[0].size, found))
        return found

    monkeypatch.setattr(metrics, "_t_eer_search", spy)
    accelerated = compute_t_eer(*scores)
    (coarse_cm, coarse_asv, (_, j, i)), (fine_cm, fine_asv, _) = calls
    assert (coarse_cm, coarse_asv) == (4001, 4001)
    assert fine_cm == min(2 * i + 1600, 8001) - max(2 * i - 1600, 0)
    assert fine_asv == min(2 * j + 1600, 8001) - max(2 * j - 1600, 0)
    monkeypatch.undo()
    assert accelerated == compute_t_eer(*scores, search="exact")
    assert 1 < accelerated < 20


def test_t_eer_search_is_named():
    with pytest.raises(ValueError, match="search must be one of accelerated, exact"):
        compute_t_eer([1.0], [0.5], [0.0], [2.0], [0.0], [1.0], search="fast")


def test_accelerated_and_exact_t_eer_can_differ():
    """The coarse grid can settle on another crossing where the criterion has several minima (bimodal scores
    here): the official figure is then the accelerated one, and search="exact" gives the other."""
    rng = np.random.default_rng(5)

    def bimodal(k, a, b):
        return np.where(rng.random(k) < 0.5, rng.normal(a, 0.3, k), rng.normal(b, 0.3, k))

    n = 1600  # 6401 points on each curve: step 2
    cm = [bimodal(n, 0, 3), bimodal(n, 0, 3), bimodal(2 * n, -1, 2.5)]
    asv = [bimodal(n, 2, 4), bimodal(n, -1, 1), bimodal(2 * n, 0, 3.5)]
    accelerated, exact = compute_t_eer(*cm, *asv), compute_t_eer(*cm, *asv, search="exact")
    assert 0 < exact < 100 and 0 < accelerated < 100 and abs(accelerated - exact) > 1
