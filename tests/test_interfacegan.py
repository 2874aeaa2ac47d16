"""InterFaceGAN's fit on synthetic data: the direction, its slope and the conditional projection."""

from __future__ import annotations

import numpy as np
import pytest

from editgan_core.eval.interfacegan import condition, fit_direction


def test_fit_recovers_a_planted_direction_and_its_slope():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2000, 16))
    normal = rng.normal(size=16)
    normal /= np.linalg.norm(normal)
    y = 0.3 + 0.5 * w @ normal + 0.01 * rng.normal(size=2000)
    d = fit_direction(w, y)
    assert d.normal @ normal > 0.999 and d.slope == pytest.approx(0.5, rel=0.02) and d.mean == pytest.approx(
        y.mean())
    with pytest.raises(ValueError, match="do not vary"):
        fit_direction(w, np.ones(2000))


def test_condition_keeps_the_other_attribute_fixed():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3000, 8))
    a, b = np.eye(8)[0], (np.eye(8)[0] + np.eye(8)[1]) / np.sqrt(2)  # b entangled with a
    da, db = fit_direction(w, w @ a), fit_direction(w, w @ b)
    cond = condition(db, [da])
    assert abs(cond.normal @ da.normal) < 1e-9 and cond.normal @ db.normal > 0.7
    step = cond.normal / cond.slope  # one unit of b along the conditioned normal ...
    assert step @ b == pytest.approx(1.0, rel=0.02) and abs(step @ a) < 1e-3  # ... and none of a
    with pytest.raises(ValueError, match="span"):
        condition(da, [da])
