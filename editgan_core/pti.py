"""Pivotal tuning (Roich et al., 2021): fine-tune a copy of the generator so the photo's latent draws the photo.

An embedding alone stops where the generator can no longer follow the photo; pivotal tuning moves the
generator instead, around that one latent (the *pivot*), so the reconstruction gets close and the same W+
edit vectors still work: edits are offsets from the pivot, and a locality regulariser keeps the tuned copy
drawing what the original drew at latents a step away from it, so directions keep their meaning.

Losses: L2 (+ LPIPS when present) between G'(pivot) and the photo; plus, every step, the same distances
between G'(w_r) and G(w_r) at ``w_r = pivot + reach · ρ · (w − pivot)/‖w − pivot‖`` for a fresh mapping
sample w, with ρ the W samples' typical distance from their mean (the paper's fixed α = 30 is in FFHQ's W
units; ρ makes it one setting across models). Only the synthesis network is tuned; the mapping network,
which W+ editing never runs, stays shared. Written here (no library offers it for these models).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from editgan_core.optim import StepInfo

MAX_STEPS = 1000


@dataclass
class TuningSettings:
    steps: int = 100
    lr: float = 1e-3  # Roich et al. use 3e-4 on 1024 px models; measured on the demo in docs/results.md
    l2_weight: float = 1.0
    lpips_weight: float = 1.0
    locality_weight: float = 0.1
    reach: float = 0.5  # how far from the pivot the regulariser looks, in units of the W spread


@dataclass
class TuningResult:
    """The tuned synthesis weights (CPU tensors: plain data for ZeroGPU) and what the tuning did."""

    state: dict[str, torch.Tensor]
    steps_done: int
    stopped: bool
    seconds: float
    loss_start: float
    loss_end: float


def synthesis_state(generator) -> dict[str, torch.Tensor]:
    """The tensors pivotal tuning changes: everything but the mapping network (``style.*``)."""
    return {k: v for k, v in generator.state_dict().items() if not k.startswith("style.")}


def tuned_copy(generator, state: Mapping[str, torch.Tensor]):
    """A frozen copy of ``generator`` with the tuned synthesis weights loaded (shapes checked)."""
    expected = synthesis_state(generator)
    if set(state) != set(expected) or any(state[k].shape != v.shape for k, v in expected.items()):
        raise ValueError("tuned weights do not fit this generator (another model, or a damaged state)")
    tuned = copy.deepcopy(generator)
    tuned.load_state_dict(dict(state), strict=False)
    return tuned.eval().requires_grad_(False)


class PivotalTuner:
    """Tunes a copy of ``generator`` around ``pivot`` (1, n_latent, style_dim) towards ``target`` (1, 3, H, W)."""

    def __init__(self, generator, pivot: torch.Tensor, target: torch.Tensor, noise: Sequence[torch.Tensor],
                 lpips=None, settings: TuningSettings | None = None, seed: int = 0) -> None:
        self.original, self.pivot, self.target, self.noise, self.lpips = generator, pivot, target, noise, lpips
        self.settings = settings or TuningSettings()
        if not 0 <= self.settings.steps <= MAX_STEPS:
            raise ValueError(f"pivotal tuning takes 0..{MAX_STEPS} steps, got {self.settings.steps}")
        self.rng = torch.Generator().manual_seed(seed)
        self.tuned = copy.deepcopy(generator).eval()
        self.tuned.requires_grad_(False)
        self.params = [p for name, p in self.tuned.named_parameters() if not name.startswith("style.")]
        for p in self.params:
            p.requires_grad_(True)
        self.spread = self._w_spread()
        self.last_image = target  # the step's reconstruction: what progress callbacks get as ``variable``

    @torch.no_grad()
    def _w_spread(self) -> float:
        z = torch.randn(1000, self.original.style_dim, generator=self.rng).to(self.pivot.device)
        w = self.original.style(z)
        return float((w - w.mean(0)).norm(dim=1).median())

    def distance(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        l2 = F.mse_loss(x, y)
        lp = self.lpips(x, y).mean() if self.lpips is not None else None
        return l2, lp

    def _weighted(self, l2: torch.Tensor, lp: torch.Tensor | None) -> torch.Tensor:
        s = self.settings
        return s.l2_weight * l2 + (s.lpips_weight * lp if lp is not None else 0.0)

    def locality_latent(self) -> torch.Tensor:
        z = torch.randn(1, self.original.style_dim, generator=self.rng).to(self.pivot.device)
        with torch.no_grad():
            w = self.original.w_to_wplus(self.original.style(z))
        direction = w - self.pivot
        return self.pivot + self.settings.reach * self.spread * direction / direction.norm().clamp_min(1e-8)

    def loss(self) -> tuple[torch.Tensor, dict[str, float]]:
        image = self.tuned.synthesis(self.pivot, noise=self.noise).image
        self.last_image = image.detach()
        l2, lp = self.distance(image, self.target)
        loss = self._weighted(l2, lp)
        terms = {"l2": l2.item(), **({"lpips": lp.item()} if lp is not None else {})}
        if self.settings.locality_weight > 0:
            w_r = self.locality_latent()
            with torch.no_grad():
                reference = self.original.synthesis(w_r, noise=self.noise).image
            local = self._weighted(*self.distance(self.tuned.synthesis(w_r, noise=self.noise).image, reference))
            loss = loss + self.settings.locality_weight * local
            terms["locality"] = local.item()
        return loss, terms

    def run(self, callback: Callable[[StepInfo], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> TuningResult:
        """Adam on the synthesis weights for ``settings.steps`` steps (or until ``should_stop``)."""
        start = time.perf_counter()
        optimiser = torch.optim.Adam(self.params, lr=self.settings.lr)
        steps, stopped, done = self.settings.steps, False, 0
        first = last = math.nan
        for step in range(1, steps + 1):
            if should_stop is not None and should_stop():
                stopped = True
                break
            loss, terms = self.loss()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pivotal tuning diverged at step {step} (loss {loss.item()})")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            done, last = step, loss.item()
            first = last if step == 1 else first
            if callback is not None:
                callback(StepInfo(step, steps, last, terms, min(first, last), self.last_image))
        self.tuned.requires_grad_(False)
        state = {k: v.detach().cpu() for k, v in synthesis_state(self.tuned).items()}
        return TuningResult(state, done, stopped, time.perf_counter() - start, first, last)
