"""The stemsep-legacy runtime: our own in-repo models (the DSP default model, BS/Mel-Roformer)."""
