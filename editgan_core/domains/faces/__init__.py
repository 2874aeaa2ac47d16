"""Procedural cartoon faces with exact part labels: the offline demo domain.

Why a drawn domain: EditGAN needs images together with their part segmentation, and the editing
vectors are learnt from pairs "same face, one attribute changed". A renderer gives unlimited such
pairs, pixel-exact labels and the ground-truth attribute values, with no download.

How it works, one module per step:
- ``attributes``: ``sample_attributes(seed)`` draws *every* random number of a face from the seed;
  ``rendering.render(attrs, size)`` is a pure function of that dict, so overriding one attribute
  changes only the pixels of the parts that attribute moves.
- ``geometry`` and ``drawing``: each part is a polygon in *face units*, filled with OpenCV in painter's
  order; ``canvas`` maps face units to pixels by one affine pose transform and fills the RGB buffer
  (anti-aliased) and the label buffer (hard) with the same vertices, both supersampled. RGB is
  box-filtered down, labels are sampled at each output pixel's centre, so they stay hard and match
  the visible picture.
- ``colours`` and ``finishing``: flat colours from the appearance attributes, then lighting, blush and
  texture noise at the output size, weighted per class.
- ``sheets``: contact sheets on the command line.

This package is the domain interface ``editgan_core.domains.get_domain("faces")`` returns; part ids and
the attribute table live in ``classes`` and ``attributes``; ``landmarks`` gives the true eye and mouth positions
of a render and the framing that bundles of this domain declare.
"""

from __future__ import annotations

from editgan_core.domains.faces.attributes import ATTRIBUTE_RANGES, ATTRIBUTE_SPECS, EDIT_CLASSES, sample_attributes
from editgan_core.domains.faces.classes import CLASSES, PALETTE
from editgan_core.domains.faces.landmarks import BACKGROUND, framing_entry, landmarks
from editgan_core.domains.faces.rendering import FaceSample, render, render_batch, render_face

__all__ = ["ATTRIBUTE_RANGES", "ATTRIBUTE_SPECS", "BACKGROUND", "CLASSES", "EDIT_CLASSES", "PALETTE", "FaceSample",
           "framing_entry", "landmarks", "render", "render_batch", "render_face", "sample_attributes"]
