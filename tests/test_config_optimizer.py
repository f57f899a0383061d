"""Config validation and the optimiser/schedule recipe (spec section 8)."""
import json
import math
import subprocess
import sys

import pytest
import torch

from models.aasist import min_input_length
from utils.config import config_from_dict, load_config
from utils.errors import InputError
from utils.engine.optimizer import build_optimizer, build_scheduler, cosine_factor, scheduler_interval

# The published repository's config/AASIST.conf, as distributed: string booleans and all.
PUBLISHED_AASIST_CONF = """{
    "database_path": "./LA/",
    "asv_score_path": "ASVspoof2019_LA_asv_scores/ASVspoof2019.LA.asv.eval.gi.trl.scores.txt",
    "model_path": "./models/weights/AASIST.pth",
    "batch_size": 24,
    "num_epochs": 100,
    "loss": "CCE",
    "track": "LA",
    "eval_all_best": "True",
    "eval_output": "eval_scores_using_best_dev_model.txt",
    "cudnn_deterministic_toggle": "True",
    "cudnn_benchmark_toggle": "False",
    "model_config": {
        "architecture": "AASIST",
        "nb_samp": 64600,
        "first_conv": 128,
        "filts": [70, [1, 32], [32, 32], [32, 64], [64, 64]],
        "gat_dims": [64, 32],
        "pool_ratios": [0.5, 0.7, 0.5, 0.5],
        "temperatures": [2.0, 2.0, 100.0, 100.0]
    },
    "optim_config": {
        "optimizer": "adam",
        "amsgrad": "False",
        "base_lr": 0.0001,
        "lr_min": 0.000005,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0001,
        "scheduler": "cosine"
    },
    "freq_aug": "False"
}"""


def published_dict() -> dict:
    return json.loads(PUBLISHED_AASIST_CONF)


def test_published_conf_loads_unchanged(tmp_path, repo_root):
    path = tmp_path / "AASIST.conf"
    path.write_text(PUBLISHED_AASIST_CONF)
    cfg = load_config(path)
    assert cfg.eval_all_best is True and cfg.cudnn_benchmark_toggle is False and cfg.freq_aug is False
    assert cfg.optim_config.amsgrad is False and cfg.optim_config.base_lr == 1e-4
    ours = load_config(repo_root / "config" / "config.json")
    assert ours.model_config == cfg.model_config and ours.optim_config == cfg.optim_config
    assert (ours.batch_size, ours.num_epochs) == (24, 100)


def test_published_aasist_l_conf_loads(repo_root):
    cfg = load_config(repo_root / "config" / "AASIST-L.json")
    assert cfg.model_config.gat_dims == [24, 32] and cfg.model_config.pool_ratios == [0.4, 0.5, 0.7, 0.5]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("batch_size"), "missing key batch_size"),
    (lambda d: d["model_config"].pop("gat_dims"), "missing key model_config.gat_dims"),
    (lambda d: d.update(batch_sise=3), "unknown key.*batch_sise"),
    (lambda d: d["optim_config"].update(lr=1.0), r"unknown key.*optim_config\.lr"),
    (lambda d: d.update(batch_size="24"), "batch_size must be int"),
    (lambda d: d.update(batch_size=True), "batch_size must be int"),
    (lambda d: d.update(eval_all_best="yes"), "eval_all_best must be bool"),
    (lambda d: d["optim_config"].update(base_lr="fast"), "optim_config.base_lr must be float"),
    (lambda d: d["model_config"].update(pool_ratios=[0.5, "a", 0.5, 0.5]), r"model_config\.pool_ratios\[1\] must be float"),
    (lambda d: d["model_config"].update(filts=[70, [1, 32]]), "model_config.filts must be"),
    (lambda d: d["optim_config"].update(optimizer="adamw"), "unknown optimiser 'adamw'; valid: adam, sgd"),
    (lambda d: d["optim_config"].update(scheduler="linear"), "unknown schedule 'linear'; valid: cosine, multistep"),
    (lambda d: d["optim_config"].update(scheduler="multistep"), "optim_config.milestones is required"),
    (lambda d: d.update(model_config=[1]), "model_config must be a JSON object"),
])
def test_bad_config_names_the_key(mutate, message):
    d = published_dict()
    mutate(d)
    with pytest.raises(InputError, match=message):
        config_from_dict(d)


def _set(section, **changes):
    return lambda d: (d[section] if section else d).update(changes)


# One value out of range per case: (change to the published config, the key the message must name).
@pytest.mark.parametrize("mutate, key", [
    (_set("model_config", nb_samp=min_input_length(128) - 1), "model_config.nb_samp must be at least 2315"),
    (_set("model_config", first_conv=2), "model_config.first_conv must be at least 3"),
    (_set("model_config", gat_dims=[64, 0]), r"model_config.gat_dims\[1\] must be positive"),
    (_set("model_config", gat_dims=[-1, 32]), r"model_config.gat_dims\[0\] must be positive"),
    (_set("model_config", filts=[70, [1, 32], [32, 0], [32, 64], [64, 64]]), "model_config.filts must be"),
    (_set("model_config", pool_ratios=[0.5, 0.0, 0.5, 0.5]), r"model_config.pool_ratios\[1\] must be in \(0, 1\]"),
    (_set("model_config", pool_ratios=[0.5, 0.7, 1.5, 0.5]), r"model_config.pool_ratios\[2\] must be in \(0, 1\]"),
    (_set("model_config", temperatures=[2.0, 0.0, 100.0, 100.0]), r"model_config.temperatures\[1\] must be positive"),
    (_set("model_config", temperatures=[2.0, 2.0, float("nan"), 100.0]), r"model_config.temperatures\[2\] must be a finite"),
    (_set("optim_config", base_lr=-0.1), "optim_config.base_lr must be positive, got -0.1"),
    (_set("optim_config", base_lr=0), "optim_config.base_lr must be positive"),
    (_set("optim_config", base_lr=float("nan")), "optim_config.base_lr must be a finite number, got nan"),
    (_set("optim_config", base_lr=float("inf")), "optim_config.base_lr must be a finite number, got inf"),
    (_set("optim_config", lr_min=-1e-6), "optim_config.lr_min must be non-negative"),
    (_set("optim_config", weight_decay=-1e-4), "optim_config.weight_decay must be non-negative"),
    (_set("optim_config", momentum=-0.9), "optim_config.momentum must be non-negative"),
    (_set("optim_config", optimizer="sgd", nesterov=True), "optim_config.momentum must be positive with nesterov"),
    (_set("optim_config", betas=[0.9, 1.0]), r"optim_config.betas\[1\] must be in \[0, 1\)"),
    (_set("optim_config", betas=[-0.1, 0.999]), r"optim_config.betas\[0\] must be in \[0, 1\)"),
    (_set("optim_config", scheduler="multistep", milestones=[4, 2], lr_decay=0.5), "optim_config.milestones must be increasing"),
    (_set("optim_config", scheduler="multistep", milestones=[0, 2], lr_decay=0.5), "optim_config.milestones must be increasing"),
    (_set("optim_config", scheduler="multistep", milestones=[2, 4], lr_decay=0.0), "optim_config.lr_decay must be positive"),
    (_set("optim_config", scheduler="sgdr", T0=0, Tmult=2), "optim_config.T0 must be at least 1"),
    (_set("optim_config", scheduler="sgdr", T0=2, Tmult=0), "optim_config.Tmult must be at least 1"),
    (_set(None, num_workers=-1), "num_workers must be non-negative"),
    (_set(None, eval_batch_size=0), "eval_batch_size must be positive"),
    (_set(None, swa_max_dev_eer=-1.0), r"swa_max_dev_eer must be a percentage in \[0, 100\]"),
    (_set(None, swa_max_dev_eer=101), r"swa_max_dev_eer must be a percentage in \[0, 100\]"),
    (_set(None, swa_max_dev_eer=float("-inf")), "swa_max_dev_eer must be a finite number"),
    (_set(None, batch_size=0), "batch_size must be positive"),
])
def test_value_out_of_range_names_the_key(mutate, key):
    d = published_dict()
    mutate(d)
    with pytest.raises(InputError, match=key):
        config_from_dict(d)


def test_range_edges_are_accepted():
    d = published_dict()
    d.update(num_workers=0, eval_batch_size=None, swa_max_dev_eer=100)
    d["model_config"].update(nb_samp=min_input_length(128), first_conv=3, pool_ratios=[1.0, 1.0, 1.0, 1.0])
    d["optim_config"].update(lr_min=0.0, weight_decay=0.0, betas=[0.0, 0.0])
    cfg = config_from_dict(d)
    assert cfg.num_workers == 0 and cfg.model_config.first_conv == 3


def test_non_finite_json_literals_name_the_key(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text(PUBLISHED_AASIST_CONF.replace('"weight_decay": 0.0001', '"weight_decay": NaN'))
    with pytest.raises(InputError, match="nan.json: optim_config.weight_decay must be a finite number"):
        load_config(path)
    path.write_text(PUBLISHED_AASIST_CONF.replace('"base_lr": 0.0001', '"base_lr": Infinity'))
    with pytest.raises(InputError, match="optim_config.base_lr must be a finite number"):
        load_config(path)


def test_non_utf8_config_names_the_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(PUBLISHED_AASIST_CONF.replace("./LA/", "./L\u00e9/").encode("latin-1"))
    with pytest.raises(InputError, match="latin1.json: not UTF-8"):
        load_config(path)
    path.write_bytes(b"\xef\xbb\xbf" + PUBLISHED_AASIST_CONF.encode())  # a byte-order mark is fine
    assert load_config(path).batch_size == 24


def test_train_refuses_bad_config_before_writing(tmp_path, repo_root):
    d = published_dict()
    d["optim_config"]["base_lr"] = -0.1
    config = tmp_path / "bad.json"
    config.write_text(json.dumps(d))
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "scripts/train.py", "--config", str(config), "--output_dir", str(out),
                             "--device", "cpu"], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "error: " in result.stderr and "optim_config.base_lr must be positive" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "batch_size": 24,\n  "num_epochs": \n}')
    with pytest.raises(InputError, match=r"broken.json, line 4: not valid JSON"):
        load_config(path)
    with pytest.raises(InputError, match="cannot read config"):
        load_config(tmp_path / "absent.json")


def _optim(**changes):
    d = published_dict()
    d["optim_config"].update(changes)
    return config_from_dict(d).optim_config


def _lrs(scheduler, optimizer, n):
    out = []
    for _ in range(n):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_cosine_schedule_follows_the_formula():
    cfg = _optim()
    total = 10 * 7
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["weight_decay"] == 1e-4
    lrs = _lrs(build_scheduler(opt, cfg, num_epochs=10, steps_per_epoch=7), opt, total + 1)
    r = 5e-6 / 1e-4
    expected = lambda step: 1e-4 * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * step / total)))
    assert lrs[0] == pytest.approx(1e-4, rel=1e-12)
    assert lrs[total // 2] == pytest.approx(expected(total // 2), rel=1e-12)
    assert lrs[total // 2] == pytest.approx((1e-4 + 5e-6) / 2, rel=1e-12)
    assert lrs[total - 1] == pytest.approx(expected(total - 1), rel=1e-12)
    assert lrs[total] == pytest.approx(5e-6, rel=1e-12)
    assert cosine_factor(0, 5, 0.1) == 1.0
    assert scheduler_interval(cfg) == "step"


def test_other_schedules_and_sgd():
    cfg = _optim(optimizer="sgd", momentum=0.9, nesterov=True, scheduler="multistep", milestones=[2, 4], lr_decay=0.5)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] is True
    assert _lrs(build_scheduler(opt, cfg, 6, 1), opt, 6) == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5])
    assert scheduler_interval(cfg) == "epoch"

    cfg = _optim(scheduler="keras_decay")
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    lrs = _lrs(build_scheduler(opt, cfg, 1, 1), opt, 3)
    assert lrs == pytest.approx([1e-4, 1e-4 / (1 + 1e-4), 1e-4 / (1 + 2e-4)])

    cfg = _optim(scheduler="sgdr", T0=2, Tmult=2, lr_min=0.0)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)
    lrs = _lrs(build_scheduler(opt, cfg, 1, 1), opt, 7)
    # periods of 2 then 4 epochs, restarting at the base rate
    assert lrs == pytest.approx([1e-4, 5e-5, 1e-4, 1e-4 * 0.5 * (1 + math.cos(math.pi / 4)), 5e-5,
                                 1e-4 * 0.5 * (1 + math.cos(3 * math.pi / 4)), 1e-4])

    cfg = _optim(scheduler="none")
    assert build_scheduler(build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg), cfg, 1, 1) is None
