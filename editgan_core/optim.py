"""The one latent-optimisation loop behind embedding, learning edits and refinement.

Each caller supplies an objective; the loop owns Adam, the learning-rate schedule, keeping the
best step, progress callbacks and cancellation, so those behave the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class StepInfo:
    """What a progress callback sees after each step."""

    step: int  # 1-based
    steps: int
    loss: float
    terms: dict[str, float]
    best_loss: float
    variable: torch.Tensor  # detached current value


@dataclass
class OptimResult:
    best: torch.Tensor
    best_loss: float
    best_step: int
    steps_done: int
    stopped: bool
    history: list[dict[str, float]] = field(default_factory=list)


def lr_at(step: int, steps: int, lr: float, schedule: str, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Constant, or StyleGAN2-projector style: linear warm-up, cosine ramp-down."""
    if schedule == "constant":
        return lr
    if schedule != "rampcos":
        raise ValueError(f"unknown schedule {schedule!r}")
    t = step / max(steps, 1)
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / rampup if rampup > 0 else 1.0)


def optimise(
    init: torch.Tensor,
    objective: Objective,
    steps: int,
    lr: float,
    schedule: str = "constant",
    callback: Callable[[StepInfo], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> OptimResult:
    """Minimise ``objective(variable)`` from ``init`` with Adam; returns the best variable seen."""
    if steps < 0:
        raise ValueError("steps must be >= 0")
    variable = init.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([variable], lr=lr)
    best, best_loss, best_step = variable.detach().clone(), math.inf, 0
    history: list[dict[str, float]] = []
    stopped = False
    step = 0
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            stopped, step = True, step - 1
            break
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step - 1, steps, lr, schedule)
        loss, terms = objective(variable)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"optimisation diverged at step {step} (loss {loss.item()})")
        # The loss belongs to the value before this update: remember that value if it is the best.
        if loss.item() < best_loss:
            best, best_loss, best_step = variable.detach().clone(), loss.item(), step - 1
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        history.append({"loss": loss.item(), **terms})
        if callback is not None:
            callback(StepInfo(step, steps, loss.item(), terms, best_loss, variable.detach()))
    if steps == 0 or not stopped:
        # Score the final value too, so the last update is not wasted.
        with torch.no_grad():
            loss, _ = objective(variable)
        if loss.item() < best_loss:
            best, best_loss, best_step = variable.detach().clone(), loss.item(), step
    return OptimResult(best, best_loss, best_step, step, stopped, history)
