"""Networks (StyleGAN2, segmentation branch, encoder, attribute net), their save/load contract and generator
checkpoint loading."""
