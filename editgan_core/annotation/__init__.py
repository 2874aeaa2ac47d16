"""Annotating a model's images and training its segmentation branch from them (EditGAN's 16 labels, in the studio).

``store`` keeps the set in a folder, ``sources`` adds generated samples and photos, ``suggest``
proposes regions from the generator's features, ``training`` trains, cross-validates and installs the
segmenter, ``archive`` exports and imports the set as a zip, ``labelfiles``/``folder`` read label maps
from disk (grey ids or colours). No UI code: the studio and the commands call these.
"""
