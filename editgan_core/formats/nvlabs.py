"""NVlabs ``stylegan2-ada-pytorch`` snapshot pickles, read without running any of their code.

The snapshots store each network together with its source (``torch_utils.persistence``), so a plain
``pickle.load`` imports the modules the file names and executes the code stored in it. Here a
restricted unpickler maps the few globals such a snapshot needs to local stand-ins, keeps every
network as its saved module state (``SavedModule``: parameters, buffers, submodules, attributes)
and never imports a module the file names; tensors are rebuilt from ``torch.save`` blobs with
``weights_only=True``. ``G_ema`` (and ``D``) are then converted to this project's rosinality-named
models; whatever cannot be converted faithfully is refused by name.

    python -m editgan_core.formats.nvlabs --bench FILE.pkl   # import time vs plain torch.load
"""

from __future__ import annotations

import argparse
import io
import pickle
import statistics
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from editgan_core.formats.nvlabs_convert import convert_discriminator, convert_generator
from editgan_core.models.checkpoint import ImportedCheckpoint
from editgan_core.models.serialization import CheckpointError

PERSISTENCE_VERSION = 6  # torch_utils.persistence's format version in stylegan2-ada-pytorch and stylegan3
NUMPY_KINDS = "biuf"  # numpy scalars a snapshot may hold as attributes (gains, betas): bool, int, float
TF_HINT = ("it is a TensorFlow-era StyleGAN/StyleGAN2 pickle (dnnlib.tflib). Convert it once, in a trusted "
           "environment with TensorFlow, with NVlabs stylegan2-ada-pytorch's legacy.py (or rosinality's "
           "convert_weight.py) and import the result")
XL_HINT = ("it looks like a StyleGAN-XL snapshot (Projected-GAN discriminator, feature networks); StyleGAN-XL's "
           "generator has no StyleGAN2 equivalent, so the studio cannot edit it")


@dataclass
class SavedModule:
    """A persistent network as the snapshot stored it: class name, source text and ``__dict__``."""

    class_name: str
    module_src: str
    state: dict

    def child(self, name: str) -> SavedModule | None:
        module = self.state.get("_modules", {}).get(name)
        return module if isinstance(module, SavedModule) else None

    def children(self) -> dict[str, SavedModule]:
        return {k: v for k, v in self.state.get("_modules", {}).items() if isinstance(v, SavedModule)}

    def tensor(self, name: str) -> torch.Tensor | None:
        """A parameter or buffer (frozen layers keep their weights as buffers)."""
        for group in ("_parameters", "_buffers"):
            value = self.state.get(group, {}).get(name)
            if isinstance(value, torch.Tensor):
                return value
        return None

    def attr(self, name: str, default: object = None) -> object:
        return self.state.get(name, default)


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: its items are kept, nothing of dnnlib runs."""


@dataclass(frozen=True)
class _DType:
    """Stand-in for a pickled ``numpy.dtype``; BUILD's state is ignored (numpy never sees it)."""

    dtype: np.dtype

    def __setstate__(self, state: object) -> None:
        pass


def _persistent(meta: object) -> SavedModule:
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("state"), dict)):
        raise CheckpointError("a persistent object in the snapshot is not a saved network class; refused")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise CheckpointError(f"snapshot uses persistence format version {meta.get('version')!r}, "
                              f"expected {PERSISTENCE_VERSION}; refused")
    return SavedModule(str(meta.get("class_name")), str(meta.get("module_src", "")), dict(meta["state"]))


def _load_storage(blob: object) -> torch.UntypedStorage | torch.TypedStorage:
    if not isinstance(blob, (bytes, bytearray)):
        raise CheckpointError("a tensor storage in the snapshot is not a byte string; refused")
    storage = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise CheckpointError(f"a tensor storage in the snapshot holds a {type(storage).__name__}; refused")
    return storage


def _rebuild_tensor(storage: object, offset: int, size: tuple, stride: tuple, *_ignored: object) -> torch.Tensor:
    """A tensor view on a storage; gradient flags, hooks and metadata do not matter for inference."""
    if not isinstance(storage, (torch.UntypedStorage, torch.TypedStorage)):
        raise CheckpointError("a tensor in the snapshot is not backed by a storage; refused")
    # torch checks that offset, size and stride stay inside the storage.
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())


def _rebuild_parameter(data: object, *_ignored: object) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("a parameter in the snapshot is not a tensor; refused")
    return data


def _dtype(name: object, *_ignored: object) -> _DType:
    try:
        dtype = np.dtype(str(name))
    except TypeError as exc:
        raise CheckpointError(f"snapshot names numpy dtype {name!r}; refused") from exc
    if not isinstance(name, str) or len(name) > 4 or dtype.kind not in NUMPY_KINDS:
        raise CheckpointError(f"snapshot names numpy dtype {name!r}; only numeric scalars are accepted")
    return _DType(dtype)


def _scalar(dtype: object, data: object = b"") -> float | int | bool:
    if not isinstance(dtype, _DType) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise CheckpointError("a numpy scalar in the snapshot is malformed; refused")
    return np.frombuffer(data, dtype=dtype.dtype)[0].item()


ALLOWED_GLOBALS: dict[tuple[str, str], Callable | type] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,  # protocol-3 pickles (Python 3.7, most published snapshots) reduce sets
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "scalar"): _scalar,  # numpy 1.x
    ("numpy._core.multiarray", "scalar"): _scalar,  # numpy 2.x
}


class SnapshotUnpickler(pickle.Unpickler):
    """Resolves only ``ALLOWED_GLOBALS``, to local stand-ins; any other global is refused by name."""

    def find_class(self, module: str, name: str) -> Callable | type:
        found = ALLOWED_GLOBALS.get((module, name))
        if found is not None:
            return found
        qualified = f"{module}.{name}"
        if module.startswith("dnnlib.tflib") or module.startswith("tensorflow"):
            hint = TF_HINT
        elif module.split(".")[0] in ("pg_modules", "timm", "feature_networks"):
            hint = XL_HINT
        else:
            hint = ("an NVlabs stylegan2-ada-pytorch snapshot needs only tensors, containers and its saved "
                    "networks, so the file is either another kind of pickle or was tampered with")
        raise CheckpointError(f"refused: the pickle asks for the global {qualified}, which could run code on load; "
                              f"{hint}.")

    def persistent_load(self, pid: object) -> object:
        raise CheckpointError("refused: the pickle uses persistent ids, which snapshots never do")


def read_snapshot(path: str | Path) -> dict:
    """The snapshot's top-level dict, networks as ``SavedModule``; nothing the file names is imported or run."""
    path = Path(path)
    with path.open("rb") as f:
        try:
            obj = SnapshotUnpickler(f).load()
        except CheckpointError as exc:
            raise CheckpointError(f"{path.name}: {exc}") from exc
        except Exception as exc:  # anything else the bytes provoke means a damaged file
            if isinstance(exc, EOFError) or "truncated" in str(exc):
                raise CheckpointError(f"{path.name} ends early ({path.stat().st_size} bytes): the pickle is "
                                      "truncated; download or copy it again") from exc
            raise CheckpointError(f"{path.name} is a damaged pickle: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path.name} holds a {type(obj).__name__}; an NVlabs snapshot is a dict with "
                              "'G', 'D' and 'G_ema'")
    return obj


def import_snapshot(path: str | Path) -> ImportedCheckpoint:
    """Convert an NVlabs snapshot's ``G_ema`` (and ``D``, when it converts) to this project's models."""
    path = Path(path)
    snapshot = read_snapshot(path)
    key = "G_ema" if isinstance(snapshot.get("G_ema"), SavedModule) else "G"
    net = snapshot.get(key)
    if not isinstance(net, SavedModule):
        nets = sorted(k for k, v in snapshot.items() if isinstance(v, SavedModule))
        raise CheckpointError(f"{path.name} has no 'G_ema' or 'G' network (found {nets or sorted(snapshot)[:10]}); "
                              "is it an NVlabs stylegan2-ada-pytorch snapshot?")
    try:
        generator, w_avg, metadata = convert_generator(net)
    except CheckpointError as exc:
        raise CheckpointError(f"{path.name}: {exc}") from exc
    metadata = {"network": key, **metadata, **_training_set(snapshot)}
    discriminator = None
    if isinstance(snapshot.get("D"), SavedModule):
        try:
            discriminator = convert_discriminator(snapshot["D"])
        except CheckpointError as exc:
            metadata["discriminator_skipped"] = str(exc)
    return ImportedCheckpoint(generator, w_avg, "nvlabs-stylegan2-ada", discriminator, metadata)


def _training_set(snapshot: dict) -> dict:
    kwargs = snapshot.get("training_set_kwargs")
    if not isinstance(kwargs, dict):
        return {}
    return {"training_set": {k: v for k, v in kwargs.items()
                             if isinstance(k, str) and (isinstance(v, (str, int, float, bool)) or v is None)}}


def snapshot_tensors(snapshot: dict) -> dict[str, torch.Tensor]:
    """Every tensor in the snapshot, keyed by its path (for benchmarking against ``torch.load``)."""
    found: dict[str, torch.Tensor] = {}

    def visit(obj: object, prefix: str) -> None:
        if isinstance(obj, torch.Tensor):
            found[prefix] = obj
        elif isinstance(obj, SavedModule):
            for group in ("_parameters", "_buffers", "_modules"):
                visit(obj.state.get(group, {}), prefix)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                visit(v, f"{prefix}.{k}" if prefix else str(k))

    visit(snapshot, "")
    return found


def bench(path: Path, repeats: int = 5) -> dict[str, float]:
    """Median seconds: safe read alone, safe read + conversion, and torch.load of the same tensors."""
    def median_time(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    tensors = snapshot_tensors(read_snapshot(path))
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "tensors.pt"
        torch.save({k: v.clone() for k, v in tensors.items()}, plain)
        torch_load = median_time(lambda: torch.load(plain, map_location="cpu", weights_only=True))
    return {"tensors": len(tensors), "megabytes": sum(t.numel() * t.element_size() for t in tensors.values()) / 1e6,
            "safe_read_s": median_time(lambda: read_snapshot(path)),
            "safe_import_s": median_time(lambda: import_snapshot(path)), "torch_load_s": torch_load}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Read an NVlabs snapshot safely; --bench times it.")
    parser.add_argument("file", type=Path, help="NVlabs stylegan2-ada-pytorch .pkl snapshot")
    parser.add_argument("--bench", action="store_true", help="time the import against torch.load of its tensors")
    parser.add_argument("--repeats", type=int, default=5)
    from editgan_core.cli_common import setup_logging

    setup_logging()
    args = parser.parse_args(argv)
    if args.bench:
        r = bench(args.file, args.repeats)
        print(f"{args.file.name}: {r['tensors']} tensors, {r['megabytes']:.1f} MB; median of {args.repeats}")
        print(f"  safe read (restricted unpickler)    {r['safe_read_s'] * 1e3:8.1f} ms")
        print(f"  safe read + conversion (G_ema, D)   {r['safe_import_s'] * 1e3:8.1f} ms")
        print(f"  torch.load(weights_only) same data  {r['torch_load_s'] * 1e3:8.1f} ms")
        return
    imported = import_snapshot(args.file)
    g = imported.generator
    print(f"{args.file.name}: {g.size} px, w {g.style_dim}, {g.n_latent} ws, config {imported.generator.config}")
    print(f"discriminator: {'converted' if imported.discriminator is not None else 'none'}; "
          f"metadata {imported.metadata}")


if __name__ == "__main__":
    main()
