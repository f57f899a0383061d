"""Helpers that several test modules use: a tiny AASIST and a config that trains it on a demo corpus in seconds."""
import json
from pathlib import Path

TINY_MODEL = {"architecture": "AASIST", "nb_samp": 4000, "first_conv": 128,
              "filts": [70, [1, 4], [4, 4], [4, 8], [8, 8]], "gat_dims": [8, 8],
              "pool_ratios": [0.5, 0.7, 0.5, 0.5], "temperatures": [2.0, 2.0, 100.0, 100.0]}


def tiny_config(repo_root: Path, corpus: Path, path: Path, **changes) -> Path:
    """config/demo.json with TINY_MODEL on `corpus`: 2 epochs of batch 8, no loader workers, the weight average
    from the first epoch on; `changes` override keys. Written to `path`, which is returned."""
    config = json.loads((repo_root / "config" / "demo.json").read_text())
    config.update(database_path=str(corpus), model_config=TINY_MODEL, batch_size=8, num_epochs=2,
                  num_workers=0, swa_max_dev_eer=100.0, eval_batch_size=16)
    config.update(changes)
    path.write_text(json.dumps(config))
    return path
