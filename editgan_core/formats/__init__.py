"""Readers for checkpoint and model formats made by other projects (NVlabs, rosinality, official EditGAN)."""
