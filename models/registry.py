"""The architectures this repository builds: `model_config.architecture` -> (its config class, its module).

Adding a model is one file in `models/` holding both (the module a `base.Countermeasure`, the config a
`utils.config.ModelConfig`) and one line here; config validation, `build_model`, training, scoring, export and
the benchmark all go through this table.
"""
from utils.config import register_models

from .aasist import AASIST, AASISTConfig
from .nes2net_x import Nes2NetX, Nes2NetXConfig
from .sls import SLSConfig, XLSRSLS
from .rawgat_st import RawGATST, RawGATSTConfig
from .rawnet2 import RawNet2, RawNet2Config
from .ssl_aasist import SSLAASIST, SSLAASISTConfig

MODELS = {
    "AASIST": (AASISTConfig, AASIST),              # and AASIST-L: the same architecture, smaller
    "SSL_AASIST": (SSLAASISTConfig, SSLAASIST),
    "RawNet2Spoof": (RawNet2Config, RawNet2),      # the published baselines
    "RawNetGatSpoofST": (RawGATSTConfig, RawGATST),
    "Nes2Net_X": (Nes2NetXConfig, Nes2NetX),
    "XLSR_SLS": (SLSConfig, XLSRSLS),
}
register_models(MODELS)
