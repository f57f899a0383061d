"""evaluate.py on the other corpora: the official figures from score files as released, and scoring audio laid
out as each release unpacks, which must give the published scores of the same audio."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from data_utils.corpora import get_corpus

# (corpus, score file, keys) under reference/corpora, and the golden headline figures (summary.json names).
SCORE_FILES = {
    "asvspoof2021_la": ("asvspoof2021_LA/score.txt", "asvspoof2021_LA/keys",
                        {"eer_percent": "eval_pooled_eer_percent", "min_tdcf": "eval_pooled_min_tdcf"}),
    "asvspoof2021_df": ("asvspoof2021_DF/score.txt", "asvspoof2021_DF/keys",
                        {"eer_percent": "eval_pooled_eer_percent"}),
    "in_the_wild": ("in_the_wild/score.txt", "in_the_wild/meta.csv", {"eer_percent": "eer_percent"}),
    "asvspoof5": ("asvspoof5_track1/cm_score.tsv", "asvspoof5_track1/ASVspoof5.eval.track_1.tsv",
                  {"min_dcf": "minDCF", "eer_percent": "eer_percent", "cllr_bits": "cllr_bits", "act_dcf": "actDCF"}),
    "asvspoof5_sasv": ("asvspoof5_track2/sasv_score.tsv", "asvspoof5_track2/ASVspoof5.eval.track_2.trial.tsv",
                       {"a_dcf": "a_dcf", "min_tdcf": "min_tdcf", "t_eer_percent": "t_eer_percent"}),
}
GOLDEN_FOLDER = {"asvspoof2021_la": "asvspoof2021_LA", "asvspoof2021_df": "asvspoof2021_DF",
                 "in_the_wild": "in_the_wild", "asvspoof5": "asvspoof5_track1", "asvspoof5_sasv": "asvspoof5_track2"}


def evaluate(repo_root, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/evaluate.py", *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("corpus", sorted(SCORE_FILES))
def test_official_figures_from_a_score_file(corpus, repo_root, reference_dir, tmp_path):
    scores, keys, names = SCORE_FILES[corpus]
    root = reference_dir / "corpora"
    summary = json.loads((root / "summary.json").read_text())[GOLDEN_FOLDER[corpus]]
    result = evaluate(repo_root, "--corpus", corpus, "--scores", root / scores, "--keys", root / keys,
                      "--json", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    for ours, golden in names.items():
        assert metrics[ours] == pytest.approx(summary[golden], rel=1e-9, abs=0), ours


def test_a_score_file_that_misses_trials_is_named(repo_root, reference_dir, tmp_path):
    root = reference_dir / "corpora" / "in_the_wild"
    lines = (root / "score.txt").read_text().splitlines()
    short = tmp_path / "score.txt"
    short.write_text("\n".join(lines[:-2]) + "\n")
    result = evaluate(repo_root, "--corpus", "in_the_wild", "--scores", short, "--keys", root / "meta.csv")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and f"{short}: 2 of the 700 trials of " in result.stderr
    assert "are missing" in result.stderr


# --- scoring audio as each release lays it out ----------------------------------------------------------------

def release_folders(la_tiny_protocol, flacs, tmp_path):
    """The six LA_tiny utterances laid out as each release unpacks, with keys naming them; {corpus: (root, keys)}."""
    entries = [line.split() for line in la_tiny_protocol.read_text().splitlines() if line.strip()]
    root = tmp_path / "release"
    layouts = {"asvspoof2021_la": "ASVspoof2021_LA_eval/flac", "asvspoof2021_df": "ASVspoof2021_DF_eval/flac",
               "asvspoof5": "flac_E_eval"}
    for folder in layouts.values():
        (root / folder).mkdir(parents=True)
        for _, utt, *_ in entries:
            shutil.copy(flacs / f"{utt}.flac", root / folder / f"{utt}.flac")
    (root / "release_in_the_wild").mkdir()
    for i, (_, utt, *_) in enumerate(entries):  # In-the-Wild ships 16-bit wav: the same samples
        x, sr = sf.read(flacs / f"{utt}.flac", dtype="int16")
        sf.write(root / "release_in_the_wild" / f"{i}.wav", x, sr, subtype="PCM_16")
    keys = tmp_path / "keys"
    la, df = keys / "LA" / "CM", keys / "DF" / "CM"
    asv = keys / "LA" / "ASV"
    for d in (la, df, asv / "ASVTorch_Kaldi"):
        d.mkdir(parents=True)
    la_rows, df_rows, asv_rows, asv_scores, itw, asv5 = [], [], [], [], ["file,speaker,label"], []
    for i, (spk, utt, _, attack, key) in enumerate(entries):
        bona = key == "bonafide"
        la_rows.append(f"{spk} {utt} none ita_tx {'bonafide' if bona else 'A07'} {key} notrim eval")
        df_rows.append(f"{spk} {utt} nocodec asvspoof {'bonafide' if bona else 'A07'} {key} notrim eval "
                       f"{'bonafide' if bona else 'neural_vocoder_autoregressive'} - - - -")
        itw.append(f"{i}.wav,Speaker {i},{'bona-fide' if bona else 'spoof'}")
        asv5.append(f"E_{i:04d} {utt} F - - - {'-' if bona else 'AC1'} {'bonafide' if bona else 'A17'} {key} -")
    for i, label in enumerate(["target", "nontarget", "target", "nontarget", "spoof", "spoof", "target", "nontarget"]):
        attack = "A07" if label == "spoof" else "bonafide"
        asv_rows.append(f"LA_9{i:03d} LA_E_9{i:06d} none ita_tx {attack} {label} notrim eval")
        asv_scores.append(f"LA_9{i:03d} LA_E_9{i:06d} {[3.0, -1.0, 2.5, 0.5, 1.0, -2.0, 4.0, -0.5][i]}")
    (la / "trial_metadata.txt").write_text("\n".join(la_rows) + "\n")
    (df / "trial_metadata.txt").write_text("\n".join(df_rows) + "\n")
    (asv / "trial_metadata.txt").write_text("\n".join(asv_rows) + "\n")
    (asv / "ASVTorch_Kaldi" / "score.txt").write_text("\n".join(asv_scores) + "\n")
    (root / "release_in_the_wild" / "meta.csv").write_text("\n".join(itw) + "\n")
    (tmp_path / "ASVspoof5.eval.track_1.tsv").write_text("\n".join(asv5) + "\n")
    return root, {"asvspoof2021_la": keys, "asvspoof2021_df": keys,
                  "in_the_wild": root / "release_in_the_wild" / "meta.csv",
                  "asvspoof5": tmp_path / "ASVspoof5.eval.track_1.tsv"}, [e[1] for e in entries]


@pytest.mark.parametrize("corpus", ["asvspoof2021_la", "asvspoof2021_df", "in_the_wild", "asvspoof5"])
def test_scoring_a_release_gives_the_published_scores(corpus, repo_root, reference_dir, la_tiny, tmp_path):
    protocol = reference_dir / "LA_tiny" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt"
    root, keys, utts = release_folders(protocol, la_tiny, tmp_path)
    expected = json.loads((reference_dir / "LA_tiny_scores.json").read_text())
    result = evaluate(repo_root, "--corpus", corpus, "--config", "config/config.json", "--database_path", root,
                      "--keys", keys[corpus], "--model_path", reference_dir / "weights" / "AASIST.pth",
                      "--output_dir", tmp_path / "out", "--device", "cpu", "--json", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    handler = get_corpus(corpus)
    trials = handler.read_keys(keys[corpus])
    scores = handler.read_scores(metrics["score_file"], trials)  # the official format, read back by its reader
    np.testing.assert_allclose(scores, [expected[u] for u in utts], atol=1e-4, rtol=0)
    assert metrics["eer_percent"] is not None


def test_two_processes_under_torchrun_write_the_single_process_file(repo_root, reference_dir, la_tiny, tmp_path):
    protocol = reference_dir / "LA_tiny" / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.eval.trl.txt"
    root, keys, _ = release_folders(protocol, la_tiny, tmp_path)
    common = ["scripts/evaluate.py", "--corpus", "in_the_wild", "--config", "config/AASIST-L.json", "--database_path",
              str(root), "--keys", str(keys["in_the_wild"]), "--model_path",
              str(reference_dir / "weights" / "AASIST-L.pth"), "--device", "cpu", "--batch_size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *common, "--output_dir", str(tmp_path / "one")], cwd=repo_root,
                         capture_output=True, text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
                          *common, "--output_dir", str(tmp_path / "two")], cwd=repo_root,
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    name = "AASIST-L_in_the_wild_scores.txt"
    assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    assert two.stdout.count("EER (%):") == 1  # rank 0 reports
