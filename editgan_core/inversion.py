"""Embedding real images into W+: encoder initialisation, then optimisation (GAN inversion)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from editgan_core.losses import LazyTerm


class ReconstructionObjective:
    """L2 (+ LPIPS when available) to the photo, + encoder regulariser ‖w − E(G(w))‖².

    The regulariser's weight is small on purpose: it only has to keep w where the encoder is
    consistent. A large weight outweighs the L2 term and pulls every embedding towards an average face,
    losing expressions (smile, closed eyes); docs/results.md has the demo model's figures. It is lazy
    (``LazyTerm``), as in the edit objective.
    """

    def __init__(self, generator, image: torch.Tensor, lpips=None, encoder=None, l2: float = 1.0,
                 lpips_weight: float = 1.0, encoder_weight: float = 0.002, encoder_every: int = 4,
                 noise: Sequence[torch.Tensor] | None = None) -> None:
        self.generator, self.image, self.lpips, self.encoder = generator, image, lpips, encoder
        self.l2, self.lpips_weight, self.encoder_weight = l2, lpips_weight, encoder_weight
        self.noise = noise if noise is not None else generator.stored_noise()
        self.encoder_term = LazyTerm(encoder_every)

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
            loss = loss + self.encoder_weight * self.encoder_term(lambda: F.mse_loss(self.encoder(image), latent))
            terms["encoder"] = self.encoder_term.last
        return loss, terms
