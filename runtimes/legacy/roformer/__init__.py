"""Our own BS-Roformer and Mel-Band-Roformer: MSST configs and checkpoints, no third-party separation library.

Modules, each with one job:
- config.py      MSST YAML -> typed ArchConfig + InferenceConfig (safe loader, validation)
- bands.py       which STFT features form each band (BS split, Slaney mel bands)
- layout.py      the checkpoint key names and shapes a config implies
- checkpoint.py  safe loading (weights_only), unwrapping, mismatch diagnosis
- model.py       the network, inference-only and fused for speed
- chunking.py    msst-exact chunk plan and streaming overlap-add
- separator.py   config + checkpoint -> model; audio in, named stems out; the adapter's model type
- __main__.py    a command line for tests and benchmarks

Needs torch (>= 2.4 for F.rms_norm), numpy, pyyaml; soundfile for file input/output.
"""
