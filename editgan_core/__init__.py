"""EditGAN studio core: StyleGAN2 + segmentation branch + editing vectors, no UI imports."""

import os

from editgan_core.photos.limits import MAX_INPUT_PIXELS

# OpenCV reads its decoder's pixel cap once, when it loads: set it before any module imports cv2, so the
# files only OpenCV can decode (float TIFF) are bounded like the rest (``photos.decode``)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_INPUT_PIXELS))

__version__ = "0.1.0"
