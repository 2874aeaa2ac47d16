"""Every render-seed range of the procedural faces, in one table, so "held out" is checked, not promised.

The strict benchmark draws its faces from ``STRICT_HELDOUT`` and every method is tuned on ``TUNING``;
``check_disjoint`` (run by the benchmark and the tests) refuses a table in which either overlaps a range
that something learned from. The training modules keep their own constants for their own code; the
tests compare them with this table.
"""

from __future__ import annotations

LEARNED_FROM: dict[str, range] = {
    "loose evaluation (eval.edit, KID, segmenter and encoder checks)": range(0, 1_000),
    "segmenter annotations": range(100, 116),
    "preset painting (train.presets)": range(1_000, 100_000),
    "encoder training renders": range(200_000, 500_000),
    "attribute net (the judge) training": range(500_000, 1_000_000),
    "GAN training renders": range(1_000_000, 2**31),
}
TUNING = range(100_000, 150_000)  # faces the new preset method and its settings were chosen on
STRICT_HELDOUT = range(150_000, 200_000)  # the strict benchmark's faces: used by nothing else
# Generator-sample seeds (pipeline.sample_latent) the InterFaceGAN directions are fitted on: another
# random stream (latent z, not render attributes), listed here so no other command reuses them.
INTERFACEGAN_LATENT_SEEDS = range(3_000_000, 3_010_000)


def overlaps(a: range, b: range) -> bool:
    return max(a.start, b.start) < min(a.stop, b.stop)


def check_disjoint() -> None:
    """Raise if the tuning or held-out faces overlap each other or anything a model learned from."""
    for name, held in (("tuning", TUNING), ("strict held-out", STRICT_HELDOUT)):
        for used, seeds in LEARNED_FROM.items():
            if overlaps(held, seeds):
                raise ValueError(f"{name} seeds {held} overlap the {used} seeds {seeds}")
    if overlaps(TUNING, STRICT_HELDOUT):
        raise ValueError("tuning and strict held-out seeds overlap")
