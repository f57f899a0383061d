"""Front ends: what turns a raw waveform into the features a back end reads."""
