"""Losses for embedding (GAN inversion) and EditGAN editing: LPIPS, masked L2, region CE, regulariser.

LPIPS here is the VGG16 variant of Zhang et al. (2018), rebuilt without torchvision: a VGG16 ``features``
stack with torchvision's exact layer indices (so its ``features.N.*`` weights load unchanged), the lpips
input scaling, unit-normalised relu taps, and one non-negative 1x1 "linear head" per tap. The pretrained
weights cannot be fetched on an offline box, so :func:`load_lpips` returns ``None`` there (with one warning)
and callers fall back to L2; online users get them with ``python -m editgan_core.losses --download-lpips``.

Weights are looked up as (a) ``lpips_vgg.safetensors`` (our single-file format, trunk and heads) in the
checkpoint folders or the LPIPS cache (``<EDITGAN_HOME>/lpips``, where ``editgan_core.startup`` downloads
them) or (b) torchvision's ``vgg16-397923af.pth`` in the torch hub cache plus the v0.1 heads that the
``lpips`` and ``torchmetrics`` wheels ship (or the hub cache).
"""

from __future__ import annotations

import argparse
import bisect
import importlib.util
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from editgan_core.models.serialization import ModelMixin, load_checked, register_config
from editgan_core.paths import cache_dir, checkpoint_dirs

WEIGHTS_FILE = "lpips_vgg.safetensors"
WEIGHTS_METADATA = {"format": "lpips-vgg16", "lpips_version": "0.1"}
VGG16_FILE = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
HEADS_URL = "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/vgg.pth"
HEADS_CACHE_NAMES = ("lpips_vgg_v0.1.pth", "vgg.pth")  # our download name first, then the URL's basename
DOWNLOAD_COMMAND = "python -m editgan_core.losses --download-lpips checkpoints/"

# Folders searched for WEIGHTS_FILE after any the caller names (then the LPIPS cache, ``weights_cache``).
DEFAULT_SEARCH_DIRS: tuple[Path, ...] = tuple(checkpoint_dirs())
# Where the installed wheels keep the v0.1 VGG heads (found without importing them: both import torchvision).
HEADS_IN_PACKAGES = (("lpips", "weights/v0.1/vgg.pth"), ("torchmetrics", "functional/image/lpips_models/vgg.pth"))

# torchvision's VGG16 ("configuration D"): numbers are 3x3 conv widths (each followed by a ReLU), "M" a 2x2
# max-pool. Laid out flat, this gives the familiar indices: convs at 0, 2, 5, 7, 10, ..., 28.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
TAP_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
TAP_INDICES = (3, 8, 15, 22, 29)  # index in ``features`` of each tapped ReLU
TAP_CHANNELS = (64, 128, 256, 512, 512)
# The lpips package splits features[0:30] into slice1..slice5 at these bounds, keeping the indices.
_SLICE_STARTS = (0, 4, 9, 16, 23)

_TORCHVISION_KEY = re.compile(r"^features\.(\d+)\.(weight|bias)$")
_LPIPS_TRUNK_KEY = re.compile(r"^net\.slice[1-5]\.(\d+)\.(weight|bias)$")
_OWN_TRUNK_KEY = re.compile(r"^net\.features\.(\d+)\.(weight|bias)$")
_HEAD_KEY = re.compile(r"^lin[0-4]\.model\.1\.weight$")
_UNUSED_KEY = re.compile(r"^(classifier|scaling_layer)\.")  # torchvision's FC layers, lpips' fixed buffers


class LPIPSUnavailableWarning(UserWarning):
    """LPIPS weights could not be found (or fetched); the caller falls back to L2 only."""


class VGG16Features(nn.Module):
    """torchvision's ``vgg16().features`` (same 31 layers and indices), returning the five LPIPS relu taps.

    The state dict keys are ``features.0.weight`` ... ``features.28.bias``, i.e. exactly the ``features.*``
    part of a torchvision VGG16 checkpoint. The final max-pool (index 30) is kept for the layout but not run.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU()]
                in_channels = v
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.features[: TAP_INDICES[-1] + 1]):
            x = layer(x)
            if i in TAP_INDICES:
                taps.append(x)
        return taps


class ScalingLayer(nn.Module):
    """Maps [-1, 1] images to (roughly) the ImageNet-normalised range VGG was trained on, as lpips does."""

    def __init__(self) -> None:
        super().__init__()
        # Fixed constants, not weights: non-persistent so checkpoints hold learned tensors only.
        shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
        scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        self.register_buffer("shift", shift, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class LinearHead(nn.Module):
    """Per-channel weights of one tap's squared feature difference (a 1x1 conv to one channel, no bias).

    Slot 0 of ``model`` is where lpips keeps a training-time dropout; an Identity holds it here so the conv
    is ``model.1`` and lpips' ``linK.model.1.weight`` tensors load by name.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def normalize_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalise each pixel's feature vector: x / (||x|| + eps), as in lpips.

    The squared norm is clamped to the dtype's smallest normal number before the square root: identical
    values everywhere, but a finite gradient at "dead" pixels whose features are all zero (a bare sqrt
    gives NaN there, which would poison the latent being optimised).
    """
    sq = x.pow(2).sum(dim=1, keepdim=True)
    return x / (sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt() + eps)


def _mask_at(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The mask at a feature map's resolution: each cell holds the mask's mean over the pixels it covers."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.adaptive_avg_pool2d(mask, tuple(size))


class LPIPS(ModelMixin, nn.Module):
    """LPIPS distance (VGG16, lpips v0.1 layout) for images in [-1, 1]; frozen, but input gradients flow.

    ``forward(x, y)`` gives one distance per sample. With ``mask`` (N, 1, H, W) in [0, 1], every layer's
    distance map is averaged over the mask (resized to that layer) instead of the whole image, so an edit
    can be held to the original image outside its region only.
    """

    @register_config
    def __init__(self) -> None:
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Features()
        for k, channels in enumerate(TAP_CHANNELS):
            setattr(self, f"lin{k}", LinearHead(channels))
        self.requires_grad_(False)
        self.eval()

    @property
    def heads(self) -> list[LinearHead]:
        return [getattr(self, f"lin{k}") for k in range(len(TAP_CHANNELS))]

    def train(self, mode: bool = True) -> LPIPS:
        """Always stays in eval mode: it is a fixed metric, even inside a module being trained."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
            raise ValueError(f"LPIPS expects two (N, 3, H, W) images of one shape, got {shapes}")
        if mask is not None:
            if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]:
                raise ValueError(f"mask must be (N, 1, H, W) like the images, got {tuple(mask.shape)}")
            mask = mask.to(x.dtype)
        # One trunk pass over both images: half the calls, same numbers.
        taps = self.net(self.scaling_layer(torch.cat([x, y])))
        total = x.new_zeros(x.shape[0])
        for head, tap in zip(self.heads, taps, strict=True):
            fx, fy = tap.chunk(2)
            dist = head((normalize_channels(fx) - normalize_channels(fy)).pow(2))  # (N, 1, h, w)
            if mask is None:
                total = total + dist.mean(dim=(1, 2, 3))
            else:
                m = _mask_at(mask, dist.shape[-2:])
                total = total + (dist * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1e-8)
        return total

    # --- weights ---------------------------------------------------------------------------------------

    def load_weights(self, state_dict: Mapping[str, torch.Tensor]) -> LPIPS:
        """Load trunk and heads from any mix of torchvision, lpips and own key names (all must be present)."""
        load_checked(self, convert_state_dict(state_dict), "LPIPS weights")
        return self

    @classmethod
    def from_local(cls, search_dirs: Iterable[str | Path] | None = None) -> LPIPS | None:
        """Pretrained LPIPS from files already on disk, or None when they are not all there.

        Which files: ``local_weight_files``.
        """
        files = local_weight_files(search_dirs)
        if not files:
            return None
        if len(files) == 1:
            return cls.load(files[0])
        return cls().load_weights({k: v for f in files for k, v in _torch_load(f).items()})

    @classmethod
    def download(cls, dest_dir: str | Path) -> Path:
        """Fetch torchvision's VGG16 and the lpips v0.1 heads (via the torch hub cache), write the combined
        ``lpips_vgg.safetensors`` into ``dest_dir`` and return its path. Needs internet."""
        trunk = torch.hub.load_state_dict_from_url(
            VGG16_URL, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
        local_heads = _find_lpips_heads()  # an installed lpips or torchmetrics wheel saves the second download
        heads = _torch_load(local_heads) if local_heads else torch.hub.load_state_dict_from_url(
            HEADS_URL, map_location="cpu", progress=True, file_name=HEADS_CACHE_NAMES[0], weights_only=True
        )
        model = cls().load_weights({**trunk, **heads})
        return model.save(Path(dest_dir) / WEIGHTS_FILE, metadata=WEIGHTS_METADATA)


# --- key names ------------------------------------------------------------------------------------


def canonical_key(key: str) -> str | None:
    """This module's name for a torchvision, lpips or own checkpoint key; None for keys LPIPS never uses.

    ``features.5.weight`` (torchvision) and ``net.slice2.5.weight`` (lpips) both become
    ``net.features.5.weight``; ``lin0.model.1.weight`` is shared by lpips and us. Unknown keys come back
    unchanged, so a strict ``load_state_dict`` names them.
    """
    if _UNUSED_KEY.match(key):
        return None
    m = _TORCHVISION_KEY.match(key) or _LPIPS_TRUNK_KEY.match(key)
    if m:
        return f"net.features.{m.group(1)}.{m.group(2)}"
    return key


def external_key(key: str, scheme: str) -> str | None:
    """Inverse of :func:`canonical_key` for ``scheme`` 'torchvision' or 'lpips'; None if that scheme has no
    such tensor (torchvision has no heads)."""
    if scheme not in ("torchvision", "lpips"):
        raise ValueError(f"scheme must be 'torchvision' or 'lpips', got {scheme!r}")
    m = _OWN_TRUNK_KEY.match(key)
    if m:
        index, kind = int(m.group(1)), m.group(2)
        if scheme == "torchvision":
            return f"features.{index}.{kind}"
        return f"net.slice{bisect.bisect_right(_SLICE_STARTS, index)}.{index}.{kind}"
    if _HEAD_KEY.match(key):
        return key if scheme == "lpips" else None
    raise ValueError(f"not an LPIPS key: {key!r}")


def convert_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision / lpips / own state dict to this module's keys, dropping unused entries."""
    out = {}
    for key, value in state_dict.items():
        new = canonical_key(key)
        if new is not None:
            out[new] = value
    return out


def export_state_dict(state_dict: Mapping[str, torch.Tensor], scheme: str) -> dict[str, torch.Tensor]:
    """Rename an LPIPS state dict to torchvision (trunk only) or lpips key names."""
    out = {}
    for key, value in state_dict.items():
        new = external_key(key, scheme)
        if new is not None:
            out[new] = value
    return out


# --- finding weight files -------------------------------------------------------------------------


def local_weight_files(search_dirs: Iterable[str | Path] | None = None) -> list[Path]:
    """The files ``LPIPS.from_local`` loads, or [] when they are not all on disk.

    ``lpips_vgg.safetensors`` in ``search_dirs``, then ``DEFAULT_SEARCH_DIRS``, then the LPIPS cache; failing
    that, torchvision's VGG16 file in the torch hub cache plus the heads of ``_find_lpips_heads``.
    """
    dirs = [*(Path(d) for d in (search_dirs or ())), *DEFAULT_SEARCH_DIRS, weights_cache()]
    single = _first_file(dirs, [WEIGHTS_FILE])
    if single is not None:
        return [single]
    trunk, heads = _first_file(_hub_checkpoint_dirs(), [VGG16_FILE]), _find_lpips_heads()
    return [trunk, heads] if trunk is not None and heads is not None else []


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def _first_file(dirs: Iterable[Path], names: Sequence[str]) -> Path | None:
    for d in dirs:
        for name in names:
            p = Path(d).expanduser() / name
            if p.is_file():
                return p
    return None


def _hub_checkpoint_dirs() -> list[Path]:
    """torch hub's checkpoint cache (honours TORCH_HOME / XDG_CACHE_HOME), then the literal default."""
    dirs = [Path(torch.hub.get_dir()) / "checkpoints", Path("~/.cache/torch/hub/checkpoints").expanduser()]
    return list(dict.fromkeys(dirs))


def weights_cache() -> Path:
    """Where downloaded LPIPS weights are kept: ``<EDITGAN_HOME>/lpips`` (``editgan_core.paths``)."""
    return cache_dir("lpips")


def _lpips_package_dir(package: str = "lpips") -> Path | None:
    """Where a package is installed, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _find_lpips_heads() -> Path | None:
    """The v0.1 VGG heads: an installed lpips or torchmetrics wheel's copy, else the torch hub cache."""
    for package, relative in HEADS_IN_PACKAGES:
        folder = _lpips_package_dir(package)
        if folder is not None and (folder / relative).is_file():
            return folder / relative
    for d in _hub_checkpoint_dirs():
        for name in HEADS_CACHE_NAMES:
            p = d / name
            # "vgg.pth" is a generic name: only take it if it holds the heads.
            if p.is_file() and (name == HEADS_CACHE_NAMES[0] or "lin0.model.1.weight" in _torch_load(p)):
                return p
    return None


def load_lpips(allow_download: bool = False, search_dirs: Iterable[str | Path] | None = None) -> LPIPS | None:
    """Pretrained LPIPS if available (optionally downloading it), else None with a single warning.

    Never raises for missing, broken or unreachable weights: the demo must run offline on L2 alone.
    """
    search_dirs = list(search_dirs or ())
    reason = "no weight files found"
    try:
        model = LPIPS.from_local(search_dirs)
        if model is None and allow_download:
            dest = Path(search_dirs[0]) if search_dirs else weights_cache()
            model = LPIPS.load(LPIPS.download(dest))
    except Exception as e:  # any failure degrades to L2, and the warning says why
        model, reason = None, f"{type(e).__name__}: {e}"
    if model is None:
        warnings.warn(
            f"LPIPS weights are unavailable offline ({reason}); using L2 only. To get real LPIPS, run "
            f"`{DOWNLOAD_COMMAND}` on a machine with internet (or put {WEIGHTS_FILE} into checkpoints/).",
            LPIPSUnavailableWarning,
            stacklevel=2,
        )
    return model


# --- the other losses -----------------------------------------------------------------------------


class LazyTerm:
    """A costly loss term computed every ``every``-th call with weight × k (StyleGAN2's lazy R1).

    Between those calls ``last`` (its latest value, without gradient) stands in, so an objective's
    reported loss stays comparable from step to step and the best-step choice is fair.
    """

    def __init__(self, every: int) -> None:
        self.every, self.calls, self.last = max(1, every), 0, 0.0

    def __call__(self, compute: Callable[[], torch.Tensor]) -> torch.Tensor | float:
        due = self.calls % self.every == 0
        self.calls += 1
        if not due:
            return self.last
        term = compute()
        self.last = term.item()
        return self.every * term - (self.every - 1) * term.detach()


def masked_l2(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mean squared error (N,), over the mask's support when given.

    ``mask`` (N or 1, 1, H, W) with values in [0, 1] weights pixels (all channels alike); a sample with an
    empty mask gets 0, not NaN, so an edit whose region covers everything still has a finite loss.
    """
    sq = (x - y).pow(2)
    if mask is None:
        return sq.flatten(1).mean(dim=1)
    weight = mask.to(sq.dtype).expand_as(sq)
    return (sq * weight).flatten(1).sum(dim=1) / weight.flatten(1).sum(dim=1).clamp_min(1e-8)


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy over selected pixels: ``logits`` (P, C), ``target`` (P,) int64 class ids.

    Only the edit region's pixels need segmentation logits, so the caller gathers them first. ``weight``
    is an optional per-class weight (C,), as in ``F.cross_entropy``. With P == 0 the loss is 0 (still
    attached to the graph, so a backward pass through it works).
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weight)


def encoder_regulariser(
    w_plus: torch.Tensor, encoder: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor
) -> torch.Tensor:
    """Mean squared distance between ``w_plus`` and ``encoder(image)`` (usually image = G(w_plus)).

    Keeps the optimised latent where the encoder would put its own image, i.e. in the region of W+ the
    generator and segmenter were trained on. Gradients flow through both terms.
    """
    encoded = encoder(image)
    if encoded.shape != w_plus.shape:
        raise ValueError(f"encoder output {tuple(encoded.shape)} does not match w_plus {tuple(w_plus.shape)}")
    return (w_plus - encoded).pow(2).mean()


def psnr(x: torch.Tensor, y: torch.Tensor, peak: float = 2.0) -> torch.Tensor:
    """Per-sample PSNR in dB (N,) for images spanning ``peak`` (2 for [-1, 1], 255 for uint8); inf if identical."""
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(peak**2 / mse)


MAX_IMAGE_PSNR = float(10 * np.log10(255.0**2 / 1e-10))  # a pixel-exact copy (mse floored at 1e-10)


def image_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 pictures, capped at ``MAX_IMAGE_PSNR`` so means over many images stay finite."""
    x, y = (torch.from_numpy(np.asarray(image, dtype=np.float64))[None] for image in (a, b))
    return min(psnr(x, y, peak=255.0).item(), MAX_IMAGE_PSNR)


# --- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m editgan_core.losses", description="LPIPS weight tools.")
    parser.add_argument(
        "--download-lpips",
        metavar="DIR",
        type=Path,
        help=f"download VGG16 + lpips v0.1 heads and write DIR/{WEIGHTS_FILE}",
    )
    from editgan_core.cli_common import setup_logging

    setup_logging()
    args = parser.parse_args(argv)
    if args.download_lpips is None:
        parser.print_help()
        return 2
    try:
        path = LPIPS.download(args.download_lpips)
    except (OSError, RuntimeError) as e:  # no network, HTTP error, hash mismatch
        print(f"LPIPS download failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
