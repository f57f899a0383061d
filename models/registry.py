"""The architectures this repository builds: `model_config.architecture` -> (its config class, its module).

Adding a model is one file in `models/` holding both (the module a `base.Countermeasure`, the config a
`utils.config.ModelConfig`) and one line here; config validation, `build_model`, training, scoring, export and
the benchmark all go through this table.
"""
from .aasist import AASIST, AASISTConfig
from .nes2net_x import Nes2NetX, Nes2NetXConfig
from .sls import SLSConfig, XLSRSLS
from .ssl_aasist import SSLAASIST, SSLAASISTConfig

MODELS = {
    "AASIST": (AASISTConfig, AASIST),              # and AASIST-L: the same architecture, smaller
    "SSL_AASIST": (SSLAASISTConfig, SSLAASIST),
    "Nes2Net_X": (Nes2NetXConfig, Nes2NetX),
    "XLSR_SLS": (SLSConfig, XLSRSLS),
}
