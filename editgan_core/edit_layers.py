"""Which W+ rows a learned edit needs: the fewest that keep most of what the full δ achieves.

A vector spread over all rows also carries whatever its training faces had in common by chance, and
the fine rows draw colour: a mouth edit learned on every row turned irises green on other faces. Rows are
tried in contiguous ranges on resolution-block borders, scored by the segmentation term alone.
"""

from __future__ import annotations

import torch

from editgan_core.editing import EditObjective, layer_mask

DEFAULT_KEEP = 0.9  # share of the full δ's segmentation gain a range must keep


def candidate_ranges(n_latent: int, step: int = 2) -> list[tuple[int, int]]:
    """Contiguous row ranges starting and ending on multiples of ``step`` (a resolution block's rows)."""
    borders = [*range(0, n_latent, step), n_latent]
    return [(a, b) for i, a in enumerate(borders) for b in borders[i + 1:]]


@torch.no_grad()
def segmentation_loss(objective: EditObjective, latent: torch.Tensor) -> float:
    return objective(latent)[1]["ce"]


def choose_layers(objective: EditObjective, latent: torch.Tensor, delta: torch.Tensor,
                  keep: float = DEFAULT_KEEP) -> tuple[tuple[int, int], dict[tuple[int, int], float]]:
    """The shortest row range whose part of ``delta`` keeps ``keep`` of its segmentation gain (ties: the lower
    loss), and the loss of every range tried."""
    n_latent = latent.shape[1]
    delta = delta.reshape(1, *latent.shape[1:]).to(latent)
    none = segmentation_loss(objective, latent)
    losses = {r: segmentation_loss(objective, latent + delta * layer_mask(n_latent, r).to(latent))
              for r in candidate_ranges(n_latent)}
    full = losses[(0, n_latent)]
    good = [r for r, loss in losses.items() if none - loss >= keep * (none - full)]
    best = min(good, key=lambda r: (r[1] - r[0], losses[r]))
    return best, losses


def row_coherence(deltas: torch.Tensor) -> torch.Tensor:
    """Per W+ row, |mean δ| / mean |δ| over examples (N, n_latent, style_dim): 1 when every example moves the
    row the same way, about 1/√N when the rows only carry each example's own noise."""
    mean_norm = deltas.mean(0).norm(dim=-1)
    return mean_norm / deltas.norm(dim=-1).mean(0).clamp(min=1e-12)


def coherent_mean(deltas: torch.Tensor, min_coherence: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of per-example deltas on the rows whose coherence reaches ``min_coherence`` (zero elsewhere),
    and the coherence of every row."""
    coherence = row_coherence(deltas)
    keep = (coherence >= min_coherence).to(deltas.dtype)
    return deltas.mean(0) * keep[:, None], coherence
