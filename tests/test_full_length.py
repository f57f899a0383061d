"""Full-length scoring (evaluate.py --full_length): whole utterances, one at a time, in the same score-file format;
equal to the published crop for an utterance of exactly nb_samp samples, different for a longer one; refused
for a model whose layers fix its input length."""
import importlib.util
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from data_utils.demo import write_demo_corpus
from data_utils.evaluation import scoring_length
from models import MODELS, build_model
from utils.config import load_config
from utils.errors import InputError

from helpers import TINY_MODEL, tiny_config


def _evaluate(repo_root, *args) -> int:
    spec = importlib.util.spec_from_file_location("evaluate_script", repo_root / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([*map(str, args)])


def _scores(path) -> dict:
    return {line.split()[0]: float(line.split()[-1]) for line in path.read_text().splitlines()}


def test_full_length_equals_the_crop_at_nb_samp_and_differs_beyond(repo_root, tmp_path):
    corpus = tmp_path / "LA"
    write_demo_corpus(corpus, seed=0, scale=0.1)
    tiny_config(repo_root, corpus, tmp_path / "tiny.json")
    nb_samp = TINY_MODEL["nb_samp"]
    flacs = sorted((corpus / "ASVspoof2019_LA_eval" / "flac").glob("*.flac"))
    longer = [f for f in flacs if sf.info(f).frames > nb_samp + 2000]
    exact, long_one = longer[0], longer[1]
    x, rate = sf.read(exact)
    sf.write(exact, x[:nb_samp], rate, subtype="PCM_16")          # one utterance of exactly nb_samp samples
    torch.manual_seed(0)
    torch.save(build_model(TINY_MODEL).state_dict(), tmp_path / "w.pth")
    common = ["--config", tmp_path / "tiny.json", "--model_path", tmp_path / "w.pth", "--device", "cpu",
              "--output_dir", tmp_path / "out"]
    assert _evaluate(repo_root, *common) == 0
    assert _evaluate(repo_root, *common, "--full_length", "--json", tmp_path / "full.json") == 0
    crop, full = _scores(tmp_path / "out" / "w_eval_scores.txt"), _scores(tmp_path / "out" / "w_eval_full_scores.txt")
    assert crop.keys() == full.keys()
    assert abs(crop[exact.stem] - full[exact.stem]) < 1e-5
    assert abs(crop[long_one.stem] - full[long_one.stem]) > 1e-4
    assert np.isfinite(json.loads((tmp_path / "full.json").read_text())["eer_percent"])


def test_models_of_a_fixed_length_refuse_full_length(repo_root, tmp_path):
    fixed = [name for name, (_, cls) in MODELS.items() if cls.fixed_length]
    assert fixed  # RawGAT-ST and XLSR-SLS
    for name in fixed:
        config_class, model_class = MODELS[name]
        cfg = next(load_config(p).model_config for p in sorted((repo_root / "config").glob("*.json"))
                   if json.loads(p.read_text())["model_config"].get("architecture") == name)
        with pytest.raises(InputError, match=f"--full_length: {name} takes exactly {cfg.nb_samp} samples"):
            scoring_length(model_class, cfg, full_length=True)
        assert scoring_length(model_class, cfg, full_length=False) == cfg.nb_samp
    raw = json.loads((repo_root / "config" / "RawGATST_baseline.json").read_text())
    (tmp_path / "gat.json").write_text(json.dumps({**raw, "database_path": str(tmp_path)}))
    assert _evaluate(repo_root, "--config", tmp_path / "gat.json", "--model_path", tmp_path / "none.pth",
                     "--full_length", "--device", "cpu", "--output_dir", tmp_path / "out") == 2
