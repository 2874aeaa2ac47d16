"""Editing vectors δw+: the vector and its W+ arithmetic, one safetensors file each, and a per-bundle library.

``vector`` holds the type and the naming rules, ``fileformat`` the file format and ``.npy`` import,
``library`` the locked folder of a bundle's vectors and ``location`` where that folder lives; the
names below are the package's public interface.
"""

from editgan_core.vectors.fileformat import (
    FORMAT,
    SUFFIX,
    import_npy,
    load_vector,
    save_vector,
    vector_from_bytes,
    vector_to_bytes,
)
from editgan_core.vectors.library import VectorLibrary
from editgan_core.vectors.location import editgan_home, open_library, user_library_dir
from editgan_core.vectors.vector import (
    EditVector,
    VectorError,
    VectorNotFoundError,
    compose,
    sanitize_name,
    utc_now,
)

__all__ = [
    "FORMAT",
    "SUFFIX",
    "EditVector",
    "VectorError",
    "VectorLibrary",
    "VectorNotFoundError",
    "compose",
    "editgan_home",
    "import_npy",
    "load_vector",
    "open_library",
    "sanitize_name",
    "save_vector",
    "user_library_dir",
    "utc_now",
    "vector_from_bytes",
    "vector_to_bytes",
]
