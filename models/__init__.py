"""AASIST and SSL-AASIST for notebooks and scripts.

    from models import AASIST, load_model
    model = load_model("config/config.json", "checkpoints/weights/AASIST.pth")   # eval mode
    _, logits = model(waveform)          # waveform: (B, T) float32, 16 kHz
    score = logits[:, 1]                 # bona fide logit: higher = more likely bona fide
"""
from .aasist import AASIST, min_input_length
from .inference import score
from .loading import build_model, load_model, load_state_dict
from .ssl_aasist import SSLAASIST

__all__ = ["AASIST", "SSLAASIST", "build_model", "load_model", "load_state_dict", "min_input_length", "score"]
