"""The architectures this repository builds: `model_config.architecture` -> (its config class, its module).

Adding a model is one file in `models/` holding both (the module a `base.Countermeasure`, the config a
`utils.config.ModelConfig`) and one line here; config validation, `build_model`, training, scoring, export and
the benchmark all go through this table.
"""
from utils.config import register_models

from .aasist import AASIST, AASISTConfig
from .ssl_aasist import SSLAASIST, SSLAASISTConfig

MODELS = {
    "AASIST": (AASISTConfig, AASIST),              # and AASIST-L: the same architecture, smaller
    "SSL_AASIST": (SSLAASISTConfig, SSLAASIST),
}
register_models(MODELS)
