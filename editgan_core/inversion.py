"""Embedding real images into W+: encoder initialisation, then optimisation (GAN inversion)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class ReconstructionObjective:
    """L2 (+ LPIPS when available) to the photo, + encoder regulariser ‖w − E(G(w))‖²."""

    def __init__(self, generator, image: torch.Tensor, lpips=None, encoder=None, l2: float = 1.0,
                 lpips_weight: float = 1.0, encoder_weight: float = 0.1,
                 noise: Sequence[torch.Tensor] | None = None) -> None:
        self.generator, self.image, self.lpips, self.encoder = generator, image, lpips, encoder
        self.l2, self.lpips_weight, self.encoder_weight = l2, lpips_weight, encoder_weight
        self.noise = noise if noise is not None else generator.stored_noise()

    def __call__(self, latent: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        image = self.generator.synthesis(latent, noise=self.noise).image
        l2 = F.mse_loss(image, self.image)
        loss = self.l2 * l2
        terms = {"l2": l2.item()}
        if self.lpips is not None and self.lpips_weight > 0:
            lp = self.lpips(image, self.image).mean()
            loss = loss + self.lpips_weight * lp
            terms["lpips"] = lp.item()
        if self.encoder is not None and self.encoder_weight > 0:
            reg = F.mse_loss(self.encoder(image), latent)
            loss = loss + self.encoder_weight * reg
            terms["encoder"] = reg.item()
        return loss, terms
