"""The countermeasures, for notebooks and scripts.

    from models import load_model
    model = load_model("config/config.json", "checkpoints/weights/AASIST.pth")   # eval mode
    _, output = model(waveform)          # waveform: (B, T) float32, 16 kHz
    score = model.score(output)          # the published score: higher = more likely bona fide

`registry.MODELS` lists the architectures; `base.Countermeasure` is what each offers.
"""
from .aasist import AASIST, min_input_length
from .base import Countermeasure
from .inference import score
from .loading import build_model, load_model, load_state_dict
from .registry import MODELS
from .ssl_aasist import SSLAASIST

__all__ = ["AASIST", "MODELS", "Countermeasure", "SSLAASIST", "build_model", "load_model", "load_state_dict",
           "min_input_length", "score"]
