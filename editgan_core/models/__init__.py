"""Networks: StyleGAN2 (generator, discriminator), segmentation branch, encoder."""
