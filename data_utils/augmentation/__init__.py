"""Training-data augmentation: RawBoost as published (rawboost.py), and the augmenter that applies it and codecs."""
