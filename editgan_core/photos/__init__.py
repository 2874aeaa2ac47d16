"""Real photos in and out: decoding any valid image file, aligning it to a bundle's framing, pasting an edit back.

- ``decode``: file / array -> 8-bit RGB at full resolution (EXIF orientation, bit depths, alpha, CMYK, frames).
- ``framing``: how a bundle frames its images (a landmark template or a box), from its manifest.
- ``align``: the similarity transform that maps a photo onto that framing, and the aligned crop.
- ``pasteback``: the edited crop warped back into the photo, blended only around the edit.
"""


class PhotoError(ValueError):
    """A photo, landmarks or framing that cannot be used; the message is meant for the user."""
