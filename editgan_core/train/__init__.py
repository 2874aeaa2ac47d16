"""Training entry points: ``python -m editgan_core.train.{gan,encoder,segmenter}``."""
