"""Bounds on user photos, checked before any decoding work."""

MAX_INPUT_PIXELS = 64_000_000  # refuse decompression bombs / absurd uploads before decoding
MAX_FILE_BYTES = 512_000_000  # uncompressed 16-bit RGB at the pixel bound is ~384 MB
