from .aasist import AASIST
