"""utils/evaluation/calibration.py and scripts/calibrate.py: LLRs from logits, affine calibration on scores whose true LLR
is known, the JSON file and the messages for bad ones, and the command line."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from utils.evaluation.calibration import (
    ASV5_P_TARGET,
    CLASS_WEIGHTS,
    LA19_TRAIN_COUNTS,
    Calibration,
    calibration_objective,
    fit_calibration,
    llr_from_logits,
    load_calibration,
    save_calibration,
    training_prior_log_odds,
)
from data_utils.corpora import get_corpus
from utils.errors import InputError
from utils.evaluation.metrics import compute_act_dcf, compute_cllr, compute_min_dcf

MU = 1.5  # bona fide ~ N(MU, 1), spoof ~ N(-MU, 1): the true LLR of x is 2 * MU * x
RAW_SCALE, RAW_SHIFT = 3.0, 0.7  # the "system" reports (x - RAW_SHIFT) / RAW_SCALE: compressed and shifted


def gaussian_scores(n_bonafide: int = 20_000, n_spoof: int = 60_000, seed: int = 0):
    """(x_bona, x_spoof) drawn from the two Gaussians, and the system's raw scores of them."""
    rng = np.random.default_rng(seed)
    x_bona, x_spoof = rng.normal(MU, 1, n_bonafide), rng.normal(-MU, 1, n_spoof)
    return (x_bona, x_spoof), ((x_bona - RAW_SHIFT) / RAW_SCALE, (x_spoof - RAW_SHIFT) / RAW_SCALE)


# ---- LLRs from logits -------------------------------------------------------------------------------------

def test_training_prior_of_aasist_on_2019_la():
    assert CLASS_WEIGHTS == (0.1, 0.9)
    assert training_prior_log_odds(*LA19_TRAIN_COUNTS) == pytest.approx(math.log(0.9 * 2580 / (0.1 * 22800)))
    assert training_prior_log_odds(*LA19_TRAIN_COUNTS) == pytest.approx(0.018253, abs=1e-6)
    assert training_prior_log_odds(100, 100, (1.0, 1.0)) == 0.0
    with pytest.raises(ValueError, match="class counts must be positive"):
        training_prior_log_odds(0, 10)


def test_llr_from_logits_is_log_odds_less_prior():
    logits = np.array([[0.0, 0.0], [1.0, 3.0], [2.5, -1.0]])  # (N, 2): spoof, bona fide
    prior = training_prior_log_odds(*LA19_TRAIN_COUNTS)
    np.testing.assert_allclose(llr_from_logits(logits, prior), [-prior, 2 - prior, -3.5 - prior])
    # The softmax posterior log-odds, computed the long way, is the same quantity.
    posterior = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(llr_from_logits(logits, 0.0), np.log(posterior[:, 1] / posterior[:, 0]))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        llr_from_logits(np.zeros(3), 0.0)


def test_weighted_cross_entropy_optimum_matches_the_stated_prior():
    """The posterior log-odds that minimises weighted CE on a finite set, for a feature that takes one value,
    is exactly the log prior odds training_prior_log_odds states (the LLR of an uninformative x is 0)."""
    n_bona, n_spoof, (w0, w1) = 37, 290, CLASS_WEIGHTS
    logodds = np.linspace(-3, 3, 60001)
    loss = w1 * n_bona * np.logaddexp(0, -logodds) + w0 * n_spoof * np.logaddexp(0, logodds)
    assert logodds[np.argmin(loss)] == pytest.approx(training_prior_log_odds(n_bona, n_spoof), abs=1e-4)


# ---- affine calibration -----------------------------------------------------------------------------------

def test_recovers_the_true_llr_map():
    (x_bona, x_spoof), (bona, spoof) = gaussian_scores()
    cal = fit_calibration(bona, spoof)
    # llr = 2 MU x = 2 MU (RAW_SCALE * raw + RAW_SHIFT)
    assert cal.scale == pytest.approx(2 * MU * RAW_SCALE, rel=0.03)
    assert cal.offset == pytest.approx(2 * MU * RAW_SHIFT, abs=0.1)
    assert (cal.p_target, cal.n_bonafide, cal.n_spoof) == (ASV5_P_TARGET, bona.size, spoof.size)
    # Cllr comes down to that of the true LLRs (the best any calibration can do, up to sampling).
    true_cllr = compute_cllr(2 * MU * x_bona, 2 * MU * x_spoof)
    assert compute_cllr(bona, spoof) > true_cllr + 0.1
    assert compute_cllr(cal.apply(bona), cal.apply(spoof)) == pytest.approx(true_cllr, abs=0.005)


@pytest.mark.parametrize("p_target", [0.05, 0.5, ASV5_P_TARGET, 0.95])
def test_any_prior_recovers_an_affine_true_llr(p_target):
    _, (bona, spoof) = gaussian_scores(seed=1)
    cal = fit_calibration(bona, spoof, p_target=p_target)
    assert cal.scale == pytest.approx(2 * MU * RAW_SCALE, rel=0.05)
    assert cal.offset == pytest.approx(2 * MU * RAW_SHIFT, abs=0.15)


def test_act_dcf_falls_to_near_min_dcf_which_does_not_move():
    _, (bona, spoof) = gaussian_scores(seed=2)
    cal = fit_calibration(bona, spoof)
    before, after = compute_act_dcf(bona, spoof), compute_act_dcf(cal.apply(bona), cal.apply(spoof))
    floor = compute_min_dcf(bona, spoof)
    assert compute_min_dcf(cal.apply(bona), cal.apply(spoof)) == pytest.approx(floor)
    assert floor <= after <= before
    assert after - floor < 0.01 < before - floor


def test_fit_minimises_the_objective_and_its_gradient_is_right():
    _, (bona, spoof) = gaussian_scores(2000, 6000, seed=3)
    cal = fit_calibration(bona, spoof, p_target=0.3)
    best, grad = calibration_objective((cal.scale, cal.offset), bona, spoof, 0.3)
    np.testing.assert_allclose(grad, 0, atol=1e-6)
    for da, db in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)):
        assert calibration_objective((cal.scale + da, cal.offset + db), bona, spoof, 0.3)[0] > best
    eps, point = 1e-6, np.array([2.0, -0.5])
    numeric = [(calibration_objective(point + e, bona, spoof, 0.3)[0]
                - calibration_objective(point - e, bona, spoof, 0.3)[0]) / (2 * eps) for e in np.eye(2) * eps]
    np.testing.assert_allclose(calibration_objective(point, bona, spoof, 0.3)[1], numeric, rtol=1e-5)
    # At p = 0.5 the objective is Cllr.
    assert calibration_objective(point, bona, spoof, 0.5)[0] == pytest.approx(
        compute_cllr(2 * bona - 0.5, 2 * spoof - 0.5))


def test_fit_ignores_the_class_balance_of_dev():
    _, (bona, spoof) = gaussian_scores(seed=4)
    balanced = fit_calibration(bona, spoof)
    skewed = fit_calibration(bona[:2000], spoof)  # 1 : 30 instead of 1 : 3
    assert skewed.scale == pytest.approx(balanced.scale, rel=0.1)
    assert skewed.offset == pytest.approx(balanced.offset, abs=0.3)


def test_apply_is_affine_and_keeps_shape():
    cal = Calibration(scale=2.0, offset=-1.5, p_target=0.5, fitted_on="x", n_bonafide=1, n_spoof=1)
    scores = np.array([[0.0, 1.0], [-2.0, 3.5]])
    np.testing.assert_array_equal(cal.apply(scores), 2.0 * scores - 1.5)
    assert cal.apply(scores).shape == (2, 2)
    a, b = np.array([0.3, -1.0]), np.array([4.0, 0.25])
    np.testing.assert_allclose(cal.apply(0.25 * a + 0.75 * b), 0.25 * cal.apply(a) + 0.75 * cal.apply(b))


@pytest.mark.parametrize("bona, spoof, message", [
    ([1.0, 2.0], [-1.0, 0.0], "separate bona fide from spoof perfectly"),
    ([-1.0, 0.0, 0.5], [1.0, 2.0, 0.2], "do not rank bona fide above spoof"),
    ([1.0, 1.0], [1.0, 1.0], "all scores are equal"),
    ([], [1.0], "no bona fide scores"),
    ([1.0, np.nan], [0.0], "1 of 2 bona fide scores are NaN or inf"),
])
def test_fit_refuses(bona, spoof, message):
    with pytest.raises(InputError, match=message):
        fit_calibration(bona, spoof)


def test_fit_refuses_a_prior_outside_0_1():
    with pytest.raises(InputError, match="p_target must lie strictly between 0 and 1, got 1.0"):
        fit_calibration([0.0, 1.0], [0.5, -1.0], p_target=1.0)


# ---- the JSON file ----------------------------------------------------------------------------------------

def test_json_round_trip(tmp_path):
    _, (bona, spoof) = gaussian_scores(500, 1500)
    cal = fit_calibration(bona, spoof, fitted_on="dev_scores.txt")
    path = tmp_path / "sub" / "calib.json"
    save_calibration(path, cal)
    assert load_calibration(path) == cal
    assert set(json.loads(path.read_text())) == {"scale", "offset", "p_target", "fitted_on", "n_bonafide", "n_spoof"}


GOOD = {"scale": 2.0, "offset": -0.5, "p_target": 0.5, "fitted_on": "dev.txt", "n_bonafide": 10, "n_spoof": 90}


@pytest.mark.parametrize("text, message", [
    (json.dumps({k: v for k, v in GOOD.items() if k != "offset"}), "missing key offset"),
    (json.dumps(GOOD | {"bias": 1.0}), "unknown key(s) bias"),
    (json.dumps(GOOD | {"scale": "2.0"}), "scale must be float, got '2.0'"),
    (json.dumps(GOOD | {"n_spoof": 90.0}), "n_spoof must be int, got 90.0"),
    (json.dumps(GOOD | {"n_spoof": True}), "n_spoof must be int, got True"),
    (json.dumps(GOOD | {"offset": float("nan")}), "offset must be a finite number, got nan"),
    (json.dumps(GOOD | {"scale": float("inf")}), "scale must be a finite number, got inf"),
    (json.dumps(GOOD | {"scale": 10 ** 400}), "scale must be a finite number, got inf"),  # beyond a float
    (json.dumps(GOOD | {"scale": -1.0}), "scale must be positive, got -1.0"),
    (json.dumps(GOOD | {"p_target": 0}), "p_target must lie strictly between 0 and 1, got 0"),
    (json.dumps(GOOD | {"n_bonafide": 0}), "n_bonafide must be positive, got 0"),
    (json.dumps([GOOD]), "a calibration file must hold a JSON object, got array"),
    (json.dumps(GOOD | {"source": "x.json"}), "unknown key(s) source"),
    ("{\"scale\": " + "9" * 5000 + "}", "not a usable calibration file (Exceeds the limit (4300 digits)"),
    ("[" * 100_000 + "]" * 100_000, "not a usable calibration file (nested too deeply)"),
])
def test_bad_json_is_refused_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "calib.json"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        load_calibration(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


def test_json_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "calib.json"
    path.write_text('{"scale": 2.0,\n')
    with pytest.raises(InputError) as error:
        load_calibration(path)
    assert str(error.value) == f"{path}, line 2: not valid JSON (Expecting property name enclosed in double quotes)"


def test_missing_json_and_non_finite_save(tmp_path):
    with pytest.raises(InputError, match="calibration file not found: .*absent.json"):
        load_calibration(tmp_path / "absent.json")
    bad = Calibration(scale=math.nan, offset=0.0, p_target=0.5, fitted_on="", n_bonafide=1, n_spoof=1)
    with pytest.raises(InputError, match="calibration scale is nan; not writing"):
        save_calibration(tmp_path / "calib.json", bad)
    assert not (tmp_path / "calib.json").exists()


# ---- the command line -------------------------------------------------------------------------------------

def calibrate(repo_root, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/calibrate.py", *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)


def test_cli_fits_writes_and_reports_before_and_after(repo_root, tmp_path):
    _, (bona, spoof) = gaussian_scores(3000, 9000, seed=5)
    lines = [f"D_B{i} - bonafide {s!r}" for i, s in enumerate(bona.tolist())]
    lines += [f"D_S{i} A{9 + i % 8:02d} spoof {s!r}" for i, s in enumerate(spoof.tolist())]
    scores = tmp_path / "dev_scores.txt"
    scores.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "calib.json"
    result = subprocess.run([sys.executable, "scripts/calibrate.py", "--scores", str(scores), "--out", str(out)],
                            cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    cal = load_calibration(out)
    assert cal.fitted_on == str(scores) and (cal.n_bonafide, cal.n_spoof) == (3000, 9000)
    rows = {line[:12].strip(): line[12:].split() for line in result.stdout.splitlines()}
    expected = {
        "actDCF": (compute_act_dcf(bona, spoof), compute_act_dcf(cal.apply(bona), cal.apply(spoof))),
        "Cllr (bits)": (compute_cllr(bona, spoof), compute_cllr(cal.apply(bona), cal.apply(spoof))),
        "minDCF": (compute_min_dcf(bona, spoof),) * 2,
    }
    for name, (before, after) in expected.items():
        assert rows[name] == [f"{before:.5f}", f"{after:.5f}"], name
    assert expected["actDCF"][1] < expected["actDCF"][0] and expected["Cllr (bits)"][1] < expected["Cllr (bits)"][0]
    sign = "-" if cal.offset < 0 else "+"
    assert f"llr = {cal.scale:.6g} * score {sign} {abs(cal.offset):.6g}" in result.stdout


def test_cli_reads_a_corpus_score_file_with_its_keys(repo_root, tmp_path):
    _, (bona, spoof) = gaussian_scores(300, 900, seed=6)
    keys = tmp_path / "cm_key.tsv"
    keys.write_text("filename\tcm-label\n" + "".join(f"B{i}\tbonafide\n" for i in range(bona.size))
                    + "".join(f"S{i}\tspoof\n" for i in range(spoof.size)))
    scores = tmp_path / "dev.tsv"
    scores.write_text("filename\tcm-score\n" + "".join(f"B{i}\t{s!r}\n" for i, s in enumerate(bona.tolist()))
                      + "".join(f"S{i}\t{s!r}\n" for i, s in enumerate(spoof.tolist())))
    out = tmp_path / "calib.json"
    result = calibrate(repo_root, "--scores", scores, "--corpus", "asvspoof5", "--keys", keys, "--out", out)
    assert result.returncode == 0, result.stderr
    assert load_calibration(out) == fit_calibration(bona, spoof, fitted_on=str(scores))
    assert "minDCF" in result.stdout


def test_cli_bad_input_is_one_error_line(repo_root, tmp_path):
    scores = tmp_path / "bad.txt"
    scores.write_text("D_B0 - bonafide 1.0\nD_S0 A09 spof 0.0\n")
    result = calibrate(repo_root, "--scores", scores, "--out", tmp_path / "calib.json")
    assert result.returncode == 2
    assert result.stderr == f"error: {scores}, line 2: unknown key 'spof' (expected bonafide or spoof)\n"
    result = calibrate(repo_root, "--scores", scores, "--corpus", "asvspoof6", "--keys", scores,
                       "--out", tmp_path / "calib.json")
    assert result.returncode == 2 and result.stderr.startswith("error: unknown corpus 'asvspoof6' (known: ")
    assert not (tmp_path / "calib.json").exists()
    result = calibrate(repo_root, "--scores", scores, "--out", tmp_path / "calib.json", "--corpus", "asvspoof5")
    assert result.returncode == 2 and "--corpus and --keys go together" in result.stderr


def test_evaluate_and_infer_apply_a_calibration(repo_root, reference_dir, la_tiny, tmp_path):
    cal = Calibration(scale=0.5, offset=-1.0, p_target=ASV5_P_TARGET, fitted_on="dev", n_bonafide=3, n_spoof=3)
    save_calibration(tmp_path / "calib.json", cal)
    track1 = reference_dir / "corpora" / "asvspoof5_track1"
    result = subprocess.run([sys.executable, "scripts/evaluate.py", "--corpus", "asvspoof5", "--scores",
                             str(track1 / "cm_score.tsv"), "--keys", str(track1 / "ASVspoof5.eval.track_1.tsv"),
                             "--calibration", str(tmp_path / "calib.json"), "--json", str(tmp_path / "m.json")],
                            cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    after = metrics["calibrated"]
    assert after["min_dcf"] == metrics["min_dcf"] and after["eer_percent"] == metrics["eer_percent"]
    corpus = get_corpus("asvspoof5")
    trials = corpus.read_keys(track1 / "ASVspoof5.eval.track_1.tsv")
    llr = cal.apply(corpus.read_scores(track1 / "cm_score.tsv", trials))
    bona = trials.labels == "bonafide"
    assert after["act_dcf"] == pytest.approx(compute_act_dcf(llr[bona], llr[~bona]), rel=1e-12)
    assert after["cllr_bits"] == pytest.approx(compute_cllr(llr[bona], llr[~bona]), rel=1e-12)
    assert after["act_dcf"] != metrics["act_dcf"] and "calibrated:" in result.stdout
    result = subprocess.run([sys.executable, "scripts/infer.py", str(la_tiny / "LA_E_2000000.flac"), "--config",
                             "config/AASIST-L.json", "--model_path", str(reference_dir / "weights" / "AASIST-L.pth"),
                             "--calibration", str(tmp_path / "calib.json"), "--output", str(tmp_path / "r.json")],
                            cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [row] = json.loads((tmp_path / "r.json").read_text())["files"]
    assert row["llr"] == pytest.approx(0.5 * row["score"] - 1.0) and "LLR" in result.stdout


# ---- a map that float64 cannot carry out -------------------------------------------------------------------

@pytest.mark.parametrize("scale, offset, key, message", [
    (1e308, 0.0, "scale", "beyond the float range"),
    (1.0, 1e308, "offset", "maps 5 different scores to only 1 different LLRs"),
    (1e307, 1.7e308, "offset", "beyond the float range"),
    (5e-324, 0.0, "scale", "maps 5 different scores to only 4 different LLRs"),
])
def test_apply_refuses_a_map_that_overflows_or_merges_scores(scale, offset, key, message):
    """An increasing affine map keeps the order of the scores, so EER and minDCF stay; in float64 a huge offset
    gives every score the same LLR (EER 100 %) and a huge scale gives inf (counted as bad scores)."""
    cal = Calibration(scale=scale, offset=offset, p_target=0.5, fitted_on="dev", n_bonafide=1, n_spoof=1,
                      source="calib.json")
    with pytest.raises(InputError) as error:
        cal.apply(np.array([-2.5, 0.0, 1.0, 1.25, 3.25]))
    assert str(error.value).startswith(f"calib.json: calibration {key} {getattr(cal, key):g} ")
    assert message in str(error.value)


def test_apply_passes_nan_and_inf_scores_through():
    cal = Calibration(scale=2.0, offset=1.0, p_target=0.5, fitted_on="dev", n_bonafide=1, n_spoof=1)
    np.testing.assert_array_equal(cal.apply(np.array([0.0, np.nan, np.inf])), [1.0, np.nan, np.inf])


@pytest.mark.parametrize("changes, message", [
    ('"offset": 1e308', "calibration offset 1e+308 maps 1175 different scores to only 1 different LLRs"),
    ('"scale": 1e308', "calibration scale 1e+308 takes these scores (from -60 to 60) beyond the float range"),
    ('"scale": ' + "9" * 5000, "not a usable calibration file (Exceeds the limit (4300 digits)"),
])
def test_evaluate_refuses_such_a_calibration_in_one_line(repo_root, reference_dir, tmp_path, changes, message):
    path = tmp_path / "calib.json"
    key = changes.split(":")[0]
    path.write_text("{" + ", ".join([changes] + [f'"{k}": {json.dumps(v)}' for k, v in GOOD.items()
                                                 if f'"{k}"' != key]) + "}")
    track1 = reference_dir / "corpora" / "asvspoof5_track1"
    result = subprocess.run([sys.executable, "scripts/evaluate.py", "--corpus", "asvspoof5", "--scores",
                             str(track1 / "cm_score.tsv"), "--keys", str(track1 / "ASVspoof5.eval.track_1.tsv"),
                             "--calibration", str(path), "--json", str(tmp_path / "m.json")],
                            cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and not (tmp_path / "m.json").exists()
    assert result.stderr.startswith(f"error: {path}") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
