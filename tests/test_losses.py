"""LPIPS arithmetic against a hand-written computation, weight formats and lookup, and the small losses."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from editgan_core import losses
from editgan_core.losses import (
    LPIPS,
    MAX_IMAGE_PSNR,
    LPIPSUnavailableWarning,
    convert_state_dict,
    encoder_regulariser,
    export_state_dict,
    image_psnr,
    load_lpips,
    masked_cross_entropy,
    masked_l2,
    psnr,
)
from editgan_core.models.serialization import CheckpointError
from editgan_core.utils import to_tensor

# torchvision's VGG16 conv indices, grouped by the pooling stage they run at.
CONV_BLOCKS = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
HEAD_CHANNELS = [64, 128, 256, 512, 512]


def random_lpips(seed: int = 0) -> LPIPS:
    """LPIPS with random weights whose activations keep their scale through all 13 convs."""
    torch.manual_seed(seed)
    model = LPIPS()
    with torch.no_grad():
        for layer in model.net.features:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                layer.bias.normal_(0.0, 0.1)
        for head in model.heads:
            head.model[1].weight.uniform_(0.0, 1.0)
    return model


@pytest.fixture(scope="module")
def model() -> LPIPS:
    return random_lpips()


def images(n: int = 2, h: int = 48, w: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(n, 3, h, w, generator=g)).clamp(-1, 1)
    return x, y


def reference_lpips(state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS written out step by step from a torchvision/lpips-named state dict, in float64."""
    sd = {k: v.double() for k, v in state.items()}
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def taps(img: torch.Tensor) -> list[torch.Tensor]:
        h = (img.double() - shift) / scale
        out = []
        for stage, block in enumerate(CONV_BLOCKS):
            if stage > 0:
                h = F.max_pool2d(h, kernel_size=2, stride=2)
            for i in block:
                h = F.relu(F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
            out.append(h)
        return out

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for k, (a, b) in enumerate(zip(taps(x), taps(y), strict=True)):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        weight = sd[f"lin{k}.model.1.weight"].view(1, -1, 1, 1)
        total += ((a - b).pow(2) * weight).sum(1).mean(dim=(1, 2))
    return total


def mixed_names(model: LPIPS) -> dict[str, torch.Tensor]:
    """Trunk under torchvision names, heads under lpips names."""
    state = model.state_dict()
    heads = {k: v for k, v in state.items() if k.startswith("lin")}
    return {**export_state_dict(state, "torchvision"), **heads}


def test_layout_matches_torchvision_vgg16(model: LPIPS) -> None:
    trunk = export_state_dict(model.state_dict(), "torchvision")
    expected = {f"features.{i}.{kind}" for block in CONV_BLOCKS for i in block for kind in ("weight", "bias")}
    assert set(trunk) == expected
    assert len(model.net.features) == 31
    assert trunk["features.28.weight"].shape == (512, 512, 3, 3)
    for k, c in enumerate(HEAD_CHANNELS):
        assert model.state_dict()[f"lin{k}.model.1.weight"].shape == (1, c, 1, 1)


def test_lpips_matches_direct_computation(model: LPIPS) -> None:
    x, y = images()
    got = model(x, y)
    want = reference_lpips(mixed_names(model), x, y)
    assert got.shape == (2,)
    assert want.min() > 0.01  # the check is not vacuous
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)


def test_identical_images_give_zero(model: LPIPS) -> None:
    x, _ = images()
    assert model(x, x.clone()).abs().max() < 1e-7


def test_masked_lpips(model: LPIPS) -> None:
    x, y = images()
    full = model(x, y)
    torch.testing.assert_close(model(x, y, mask=torch.ones(2, 1, 48, 40)), full, atol=1e-6, rtol=1e-6)
    empty = model(x, y, mask=torch.zeros(2, 1, 48, 40))
    assert torch.equal(empty, torch.zeros(2))
    half = torch.zeros(2, 1, 48, 40)
    half[..., :24, :] = 1
    assert torch.all(model(x, y, mask=half) != full)


def test_gradients_reach_the_input_only(model: LPIPS) -> None:
    x, y = images()
    x.requires_grad_(True)
    model(x, y, mask=torch.ones(2, 1, 48, 40)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    assert not model.train().training


def test_gradients_finite_when_features_die() -> None:
    dead = random_lpips(seed=3)
    with torch.no_grad():
        dead.net.features[28].bias.fill_(-1e4)  # relu5_3 is zero everywhere
    x, y = images()
    x.requires_grad_(True)
    dead(x, y).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_key_mapping_round_trip(model: LPIPS) -> None:
    state = model.state_dict()
    tv = export_state_dict(state, "torchvision")
    lp = export_state_dict(state, "lpips")
    assert "features.0.weight" in tv and not any(k.startswith("lin") for k in tv)
    for key in ("net.slice1.0.weight", "net.slice2.5.bias", "net.slice3.14.weight", "net.slice5.28.bias"):
        assert key in lp
    assert "lin4.model.1.weight" in lp
    back = convert_state_dict({**tv, **{k: v for k, v in lp.items() if k.startswith("lin")}})
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    assert convert_state_dict(lp).keys() == state.keys()
    # What a real torchvision checkpoint / lpips model state also holds is dropped, not an error.
    extra = {"classifier.0.weight": torch.zeros(1), "scaling_layer.shift": torch.zeros(1)}
    fresh = LPIPS().load_weights({**tv, **extra, **{k: v for k, v in lp.items() if k.startswith("lin")}})
    x, y = images(n=1, h=32, w=32)
    torch.testing.assert_close(fresh(x, y), model(x, y))
    with pytest.raises(CheckpointError, match=r"lin0\.model\.1\.weight"):
        LPIPS().load_weights(tv)  # heads missing, named


def test_safetensors_round_trip(model: LPIPS, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(losses, "DEFAULT_SEARCH_DIRS", ())
    path = model.save(tmp_path / losses.WEIGHTS_FILE, metadata=losses.WEIGHTS_METADATA)
    loaded = LPIPS.from_local([tmp_path])
    assert loaded is not None
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in loaded.parameters())
    x, y = images(n=1, h=32, w=32)
    torch.testing.assert_close(LPIPS.load(path)(x, y), model(x, y))
    # files written before the save/load contract carry no "config": LPIPS has nothing to configure
    old = tmp_path / "old" / losses.WEIGHTS_FILE
    old.parent.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old), metadata=losses.WEIGHTS_METADATA)
    torch.testing.assert_close(LPIPS.load(old)(x, y), model(x, y))


def test_finds_torchvision_and_lpips_files_in_hub_cache(model: LPIPS, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(losses, "DEFAULT_SEARCH_DIRS", ())
    monkeypatch.setattr(losses, "_lpips_package_dir", lambda package="lpips": None)  # lpips, torchmetrics
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = model.state_dict()
    trunk = {**export_state_dict(state, "torchvision"), "classifier.6.bias": torch.zeros(1000)}
    torch.save(trunk, cache / losses.VGG16_FILE)
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, cache / "vgg.pth")
    loaded = LPIPS.from_local([tmp_path / "empty"])
    assert loaded is not None
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_load_lpips_warns_once_when_nothing_found(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(losses, "DEFAULT_SEARCH_DIRS", ())
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_lpips(search_dirs=[tmp_path / "empty"]) is None
    assert len(caught) == 1 and issubclass(caught[0].category, LPIPSUnavailableWarning)
    text = str(caught[0].message)
    assert "L2 only" in text and "--download-lpips" in text


def test_load_lpips_download_failure_is_one_warning(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(losses, "DEFAULT_SEARCH_DIRS", ())
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(dest):
        raise OSError("no route to host")

    monkeypatch.setattr(LPIPS, "download", staticmethod(offline))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_lpips(allow_download=True, search_dirs=[tmp_path]) is None
    assert len(caught) == 1 and "no route to host" in str(caught[0].message)


def test_cli_calls_download(tmp_path, monkeypatch, capsys) -> None:
    calls = []
    monkeypatch.setattr(LPIPS, "download", staticmethod(lambda dest: calls.append(dest) or dest / "x"))
    assert losses.main(["--download-lpips", str(tmp_path)]) == 0
    assert calls == [tmp_path]
    assert losses.main([]) == 2
    assert "--download-lpips" in capsys.readouterr().out


def test_masked_l2() -> None:
    x, y = images()
    torch.testing.assert_close(masked_l2(x, y), ((x - y) ** 2).mean(dim=(1, 2, 3)))
    mask = torch.zeros(2, 1, 48, 40)
    mask[0, :, :10] = 1  # sample 1: empty mask
    got = masked_l2(x, y, mask)
    torch.testing.assert_close(got[0], ((x - y)[0, :, :10] ** 2).mean())
    assert got[1] == 0
    x.requires_grad_(True)
    masked_l2(x, y, torch.zeros(2, 1, 48, 40)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_masked_cross_entropy() -> None:
    logits = torch.randn(7, 4, requires_grad=True)
    target = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    torch.testing.assert_close(masked_cross_entropy(logits, target), F.cross_entropy(logits, target))
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0])
    torch.testing.assert_close(
        masked_cross_entropy(logits, target, weight), F.cross_entropy(logits, target, weight=weight)
    )
    empty = masked_cross_entropy(logits[:0], target[:0])
    assert empty.item() == 0.0
    empty.backward()  # still part of the graph


def test_encoder_regulariser_and_psnr() -> None:
    w = torch.randn(2, 8, 16)
    shift = torch.full_like(w, 0.5)
    assert math.isclose(encoder_regulariser(w, lambda img: img - shift, w).item(), 0.25, rel_tol=1e-6)
    with pytest.raises(ValueError):
        encoder_regulariser(w, lambda img: img[:, :4], w)
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[1] += 0.2  # mse 0.04 -> 10 log10(4 / 0.04) = 20 dB
    p = psnr(x, y)
    assert math.isinf(p[0].item()) and math.isclose(p[1].item(), 20.0, rel_tol=1e-5)


def test_image_psnr_is_the_tensor_psnr_on_uint8_pictures_capped_for_copies() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = np.clip(a.astype(np.int16) + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert math.isclose(image_psnr(a, b), 10 * math.log10(255.0**2 / mse), rel_tol=1e-12)
    assert math.isclose(image_psnr(a, b), psnr(to_tensor(a[None]), to_tensor(b[None])).item(), rel_tol=1e-5)
    assert image_psnr(a, a) == MAX_IMAGE_PSNR and math.isfinite(MAX_IMAGE_PSNR)
