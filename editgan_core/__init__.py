"""EditGAN studio core: StyleGAN2 + segmentation branch + editing vectors, no UI imports."""

__version__ = "0.1.0"
