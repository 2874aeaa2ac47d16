"""The memory-light pixel ensemble computes the official DatasetGAN/EditGAN logits, loads their files and trains."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from editgan_core import pixel_sampling
from editgan_core.formats import editgan_official
from editgan_core.models import segmenter
from editgan_core.models.segmenter import PixelEnsemble, official_hidden
from editgan_core.models.serialization import CheckpointError
from editgan_core.models.stylegan2 import Generator
from editgan_core.pixel_sampling import interp_table, sample_features
from editgan_core.train.pixel_ensemble import PixelBank, TrainProgress, train_ensemble

TOL = 1e-5
CLASSES = 13


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest, and far faster than two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(32, 32, 2, channels={4: 16, 8: 16, 16: 8, 32: 8}).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def features(generator) -> list[torch.Tensor]:
    """Two images' feature maps, float64: 4, 4, 8, 8, 16, 16, 32, 32 px."""
    with torch.no_grad():
        latent = generator.w_to_wplus(generator.get_latent(torch.randn(2, 32)))
        out = generator.synthesis(latent, noise=generator.stored_noise(), return_features=True)
    return [f.double() for f in out.features]


def randomise_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so eval-mode BatchNorm matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))


def make_ensemble(generator, members=3, upsample="bilinear", hidden=None, seed=0) -> PixelEnsemble:
    torch.manual_seed(seed)
    ens = PixelEnsemble(generator.feature_channels(), CLASSES, members, hidden=hidden, upsample=upsample)
    randomise_batchnorm(ens, seed)
    return ens.double().eval()


def stack(features, size, mode="bilinear") -> torch.Tensor:
    """The official (B, d, H, W) stack, built independently of the module."""
    align = False if mode == "bilinear" else None
    return torch.cat([F.interpolate(f, size=size, mode=mode, align_corners=align) for f in features], 1)


def test_official_hidden_sizes():
    assert official_hidden(13) == (128, 32) and official_hidden(31) == (128, 32)
    assert official_hidden(32) == (256, 128)
    ens = PixelEnsemble([16, 16, 8], 40, members=2)
    assert ens.hidden == (256, 128) and ens.members[0].layers[6].out_features == 40


@pytest.mark.parametrize("in_len,out_len", [(4, 32), (8, 32), (32, 32), (32, 16), (5, 13), (8, 20)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_interp_table_reproduces_interpolate(in_len, out_len, mode):
    x = torch.randn(1, 3, in_len, 1, dtype=torch.float64)
    i0, i1, t = interp_table(out_len, in_len, mode, torch.float64)
    ours = x[:, :, i0] * (1 - t[:, None]) + x[:, :, i1] * t[:, None]
    theirs = F.interpolate(x, size=(out_len, 1), mode=mode, align_corners=False if mode == "bilinear" else None)
    assert (ours - theirs).abs().max() < 1e-12


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("out_size", [None, 16, (24, 40)])
def test_fast_path_matches_reference(generator, features, mode, out_size):
    ens = make_ensemble(generator, upsample=mode)
    ens.chunk_bytes = 3 * 32 * ens.hidden[0] * 3 * 8  # a few rows per block: exercises the row chunks
    with torch.no_grad():
        fast = ens(features, out_size=out_size)
        ref = ens.forward_reference(features, out_size=out_size)
    size = (32, 32) if out_size is None else ((16, 16) if out_size == 16 else out_size)
    assert fast.shape == ref.shape == (2, CLASSES, *size)
    assert (fast - ref).abs().max() < TOL
    # and the reference path is the official recipe: each MLP on the explicit stack, logits averaged
    x = stack(features, size, mode).permute(0, 2, 3, 1).reshape(-1, ens.dim)
    official = torch.stack([m.layers(x) for m in ens.members]).mean(0).view(2, *size, CLASSES).permute(0, 3, 1, 2)
    assert (ref - official).abs().max() < 1e-12


def test_frozen_weight_caches_follow_weight_changes(generator, features):
    """Stacked first layers and folded heads are reused for frozen weights, and rebuilt after any change."""
    ens = make_ensemble(generator).requires_grad_(False)
    with torch.no_grad():
        ens(features)
        ens.members[1].layers[2].running_mean.add_(0.5)  # in place, as load_state_dict does
        ens.members[0].first.weight.mul_(1.5)
        assert (ens(features) - ens.forward_reference(features)).abs().max() < TOL
    ens.train()  # batch statistics: the member-by-member heads
    assert (ens(features) - ens.forward_reference(features)).abs().max() < TOL


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_pixel_subset_equals_full_image(generator, features, mode, monkeypatch):
    ens = make_ensemble(generator, upsample=mode)
    ens.chunk_bytes = 50 * ens.hidden[0] * 3 * 8  # 50 pixels per block
    # count both ways of reading a block: project the source rows, or gather features then project
    calls = {"rows": 0, "gather": 0}
    rows_call, gather = pixel_sampling.ProjectedRows.__call__, segmenter.sample_map

    def counting_rows(self, s0, s1):
        calls["rows"] += 1
        return rows_call(self, s0, s1)

    def counting_gather(*args):
        calls["gather"] += 1
        return gather(*args)

    monkeypatch.setattr(pixel_sampling.ProjectedRows, "__call__", counting_rows)
    monkeypatch.setattr(segmenter, "sample_map", counting_gather)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        full = ens(features, out_size=(32, 24)).permute(0, 2, 3, 1)  # (B, H, W, C)
        calls.update(rows=0, gather=0)
        pixels = torch.randint(2 * 32 * 24, (173,), generator=g)  # unsorted, with repeats
        picked = ens(features, pixels=pixels, out_size=(32, 24))
        assert picked.shape == (173, CLASSES)
        assert (picked - full.reshape(-1, CLASSES)[pixels]).abs().max() < TOL
        mask = torch.rand(2, 32, 24, generator=g) < 0.2
        assert (ens(features, pixels=mask, out_size=(32, 24)) - full[mask]).abs().max() < TOL
        box = torch.zeros(2, 32, 24, dtype=torch.bool)
        box[1, 9:23, 3:20] = True  # a compact edit region
        assert (ens(features, pixels=box, out_size=(32, 24)) - full[box]).abs().max() < TOL
        assert calls["rows"] > 0 and calls["gather"] > 0
        empty = ens(features, pixels=torch.zeros(0, dtype=torch.long))
        assert empty.shape == (0, CLASSES)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_region_taps_equal_full_image_and_follow_the_pixels(generator, features, mode, monkeypatch):
    """Small pixel sets go through taps worked out once per pixel tensor; they must track its changes."""
    ens = make_ensemble(generator, upsample=mode)
    built, real = [], segmenter.PixelTaps
    monkeypatch.setattr(segmenter, "PixelTaps", lambda *a: built.append(a) or real(*a))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        full = ens(features, out_size=(32, 24)).permute(0, 2, 3, 1)
        pixels = torch.randint(2 * 32 * 24, (173,), generator=g)  # both images, unsorted, with repeats
        for _ in range(2):
            picked = ens(features, pixels=pixels, out_size=(32, 24))
            assert (picked - full.reshape(-1, CLASSES)[pixels]).abs().max() < TOL
        assert len(built) == 1  # the second call reused the taps
        pixels[:50] = torch.randint(2 * 32 * 24, (50,), generator=g)  # moved in place: new taps
        assert (ens(features, pixels=pixels, out_size=(32, 24)) - full.reshape(-1, CLASSES)[pixels]).abs().max() < TOL
        box = torch.zeros(2, 32, 24, dtype=torch.bool)
        box[0, 2:9, 1:6] = True
        assert (ens(features, pixels=box, out_size=(32, 24)) - full[box]).abs().max() < TOL
        single = [f[1:] for f in features]
        whole = ens(single, out_size=(32, 24)).permute(0, 2, 3, 1).reshape(-1, CLASSES)
        assert (ens(single, pixels=torch.ones(32, 24, dtype=torch.bool), out_size=(32, 24)) - whole).abs().max() < TOL
        assert len(built) == 4
        assert ens(features, pixels=torch.zeros(0, dtype=torch.long)).shape == (0, CLASSES)


def test_sample_features_are_the_stack_rows(features):
    pixels = torch.randint(2 * 32 * 32, (50,), generator=torch.Generator().manual_seed(2))
    rows = stack(features, (32, 32)).permute(0, 2, 3, 1).reshape(-1, 96)[pixels]
    assert (sample_features(features, pixels, (32, 32)) - rows).abs().max() < 1e-12


def test_training_batches_read_the_stack(features):
    """The training bank (channels-last, all images together) yields the stack's rows at random pixels."""
    per_image = [[f[k:k + 1] for f in features] for k in range(2)]
    bank = PixelBank(iter(per_image), [torch.zeros(32, 32, dtype=torch.long)] * 2, 3)
    x, y = bank.sample(64, torch.Generator().manual_seed(4))
    replay = torch.Generator().manual_seed(4)
    image, pixels = torch.randint(2, (64,), generator=replay), torch.randint(32 * 32, (64,), generator=replay)
    rows = stack(features, (32, 32)).permute(0, 2, 3, 1).reshape(-1, 96)[image * 32 * 32 + pixels]
    assert x.shape == (64, 96) and y.shape == (64,)
    assert (x - rows).abs().max() < 1e-12
    channels_last = [f.contiguous(memory_format=torch.channels_last) for f in features]
    flat = image * 32 * 32 + pixels
    assert (sample_features(channels_last, flat, (32, 32)) - rows).abs().max() < 1e-12


def test_class_balanced_batches(features):
    """α = 1 draws every present class about equally often, with features matching their pixels."""
    per_image = [[f[k:k + 1] for f in features] for k in range(2)]
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[0, :2, :3] = 1  # 6 pixels of class 1 among 2048; class 2 absent
    with pytest.raises(ValueError, match="class_balance"):
        PixelBank(iter(per_image), list(labels), 3, class_balance=1.5)
    uniform = PixelBank(iter(per_image), list(labels), 3)
    balanced = PixelBank(iter(per_image), list(labels), 3, class_balance=1.0)
    _, y_uniform = uniform.sample(4000, torch.Generator().manual_seed(5))
    x, y = balanced.sample(4000, torch.Generator().manual_seed(5))
    assert (y_uniform == 1).float().mean() < 0.02 and 0.45 < (y == 1).float().mean() < 0.55 and not (y == 2).any()
    rows = stack(features, (32, 32)).permute(0, 2, 3, 1).reshape(-1, 96)
    ones = rows[labels.flatten() == 1]
    assert (torch.cdist(x[y == 1], ones).min(1).values < 1e-5).all()  # each sample is one of the 6 pixels


def test_region_gradients_match_reference(generator, features):
    """The edit loop back-propagates CE on region pixels into the features: same gradient as the stack."""
    ens = make_ensemble(generator).requires_grad_(False)
    one = [f[:1].clone().requires_grad_(True) for f in features]
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 10:20, 5:25] = True
    target = torch.randint(CLASSES, (int(mask.sum()),), generator=torch.Generator().manual_seed(3))
    F.cross_entropy(ens(one, pixels=mask), target).backward()
    fast = [f.grad.clone() for f in one]
    for f in one:
        f.grad = None
    F.cross_entropy(ens.forward_reference(one).permute(0, 2, 3, 1)[mask], target).backward()
    for a, f in zip(fast, one, strict=True):
        assert (a - f.grad).abs().max() < TOL
        f.grad = None
    ens.chunk_bytes = 2 * 32 * 3 * ens.hidden[0] * 8  # two rows per block
    F.cross_entropy(ens(one).permute(0, 2, 3, 1)[mask], target).backward()  # the row-chunked path too
    for a, f in zip(fast, one, strict=True):
        assert (a - f.grad).abs().max() < TOL
        f.grad = None
    F.cross_entropy(ens(one, pixels=mask), target).backward()  # too many pixels for one block of taps
    for a, f in zip(fast, one, strict=True):
        assert (a - f.grad).abs().max() < TOL


def test_predict_and_uncertainty(generator, features):
    ens = make_ensemble(generator)
    labels = ens.predict(features)
    assert labels.shape == (2, 32, 32) and labels.dtype == torch.long
    assert torch.equal(labels, ens(features).argmax(1))
    for kind in ("entropy", "disagreement"):
        u = ens.uncertainty(features, kind=kind)
        assert u.shape == (2, 32, 32) and u.min() >= 0 and u.max() <= 1 + 1e-9
    single = PixelEnsemble(generator.feature_channels(), CLASSES, members=1).double().eval()
    assert single.uncertainty(features, kind="disagreement").max() == 0
    with pytest.raises(ValueError, match="unknown uncertainty"):
        ens.uncertainty(features, kind="variance")


def test_rejects_mismatched_inputs(generator, features):
    ens = make_ensemble(generator)
    with pytest.raises(ValueError, match="expects 8"):
        ens(features[:-1])
    with pytest.raises(ValueError, match=r"feature map 2 has shape"):
        ens([*features[:2], features[2][:, :3], *features[3:]])
    with pytest.raises(ValueError, match="pixel indices"):
        ens(features, pixels=torch.tensor([2 * 32 * 32]))
    with pytest.raises(ValueError, match="pixel mask"):
        ens(features, pixels=torch.ones(32, 32, dtype=torch.bool))


# -- official files ------------------------------------------------------------------------------
class OfficialClassifier(nn.Module):
    """Stand-in for the official ``pixel_classifier``: the same ``layers`` Sequential."""

    def __init__(self, dim: int, num_classes: int, h1: int = 128, h2: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(dim, h1), nn.ReLU(), nn.BatchNorm1d(h1), nn.Linear(h1, h2),
                                    nn.ReLU(), nn.BatchNorm1d(h2), nn.Linear(h2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def write_official(tmp_path, dim, count=3, seed=0, **kwargs):
    models, paths = [], []
    for i in range(count):
        torch.manual_seed(seed + i)
        model = OfficialClassifier(dim, CLASSES, **kwargs)
        randomise_batchnorm(model, seed + i)
        wrapped = nn.DataParallel(model)  # names keys module.layers.*, also on CPU
        path = tmp_path / f"car_model_iter10000_number_{i}.pth"
        torch.save({"model_state_dict": wrapped.state_dict()}, path)
        models.append(model.double().eval())
        paths.append(path)
    return models, paths


def test_official_import_reproduces_the_mean_logits(tmp_path, generator, features):
    models, paths = write_official(tmp_path, dim=96)
    assert "module.layers.2.running_var" in torch.load(paths[0], weights_only=True)["model_state_dict"]
    ens = editgan_official.load_segmenter(paths, generator.feature_channels()).double()
    assert not ens.training and len(ens.members) == 3 and ens.hidden == (128, 32)
    x = stack(features, (32, 32)).permute(0, 2, 3, 1).reshape(-1, 96)
    with torch.no_grad():
        expected = torch.stack([m(x) for m in models]).mean(0).view(2, 32, 32, CLASSES).permute(0, 3, 1, 2)
        assert (ens.forward_reference(features) - expected).abs().max() < 1e-12
        assert (ens(features) - expected).abs().max() < TOL


def test_official_import_explains_mismatches(tmp_path, generator):
    _, paths = write_official(tmp_path, dim=90, count=1)
    message = r"car_model_iter10000_number_0\.pth: module\.layers\.0\.weight.*d=90.*96"
    with pytest.raises(CheckpointError, match=message):
        editgan_official.load_segmenter(paths, generator.feature_channels())
    (tmp_path / "b").mkdir()
    _, good = write_official(tmp_path, dim=96, count=1)
    _, wide = write_official(tmp_path / "b", dim=96, count=1, h1=64, h2=16)
    with pytest.raises(CheckpointError, match="differs from the first"):
        editgan_official.load_segmenter([*good, *wide], generator.feature_channels())
    broken = tmp_path / "broken.pth"
    torch.save({"model_state_dict": {"module.layers.0.weight": torch.zeros(128, 96)}}, broken)
    with pytest.raises(CheckpointError, match=r"broken\.pth: no 'module\.layers\.3\.weight'"):
        editgan_official.load_segmenter([broken], generator.feature_channels())
    state = torch.load(good[0], weights_only=True)["model_state_dict"]
    del state["module.layers.5.bias"]
    torch.save({"model_state_dict": state}, broken)
    with pytest.raises(CheckpointError, match=r"missing keys: layers\.5\.bias"):
        editgan_official.load_segmenter([broken], generator.feature_channels())


def test_save_load_roundtrip(tmp_path, generator, features):
    ens = make_ensemble(generator, members=2, upsample="nearest", hidden=(24, 12))
    path = ens.save(tmp_path / "segmenter.safetensors")
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
    assert config["feature_channels"] == generator.feature_channels()
    assert (config["num_classes"], config["members"], config["hidden"], config["upsample"]) == (CLASSES, 2, [24, 12],
                                                                                                "nearest")
    loaded = PixelEnsemble.load(path).double()
    assert not loaded.training and loaded.upsample == "nearest" and loaded.hidden == (24, 12)
    with torch.no_grad():
        assert (loaded(features) - ens(features)).abs().max() < 1e-12
    with pytest.raises(CheckpointError, match="not found"):
        PixelEnsemble.load(tmp_path / "missing.safetensors")


# -- training ------------------------------------------------------------------------------------
def test_train_ensemble_learns_labels_from_features(generator):
    """Labels that are a function of the features (as real part labels are) get learned from pixel batches."""
    with torch.no_grad():
        z = torch.randn(4, 32, generator=torch.Generator().manual_seed(5))
        latent = generator.w_to_wplus(generator.get_latent(z))
        out = generator.synthesis(latent, noise=generator.stored_noise(), return_features=True)
    per_image = [[f[k:k + 1] for f in out.features] for k in range(4)]
    probe = torch.randn(96, 3, generator=torch.Generator().manual_seed(6))
    x = stack(out.features, (32, 32)).permute(0, 2, 3, 1)  # (4, 32, 32, d)
    x = (x - x.mean((0, 1, 2))) / x.std((0, 1, 2))
    labels = (x @ probe).argmax(-1)  # (4, 32, 32), three classes
    calls: list[TrainProgress] = []
    ens = train_ensemble(per_image[:3], list(labels[:3]), 3, generator.feature_channels(), members=2, steps=100,
                         pixels_per_step=256, lr=1e-2, seed=0, hidden=(32, 16), progress=calls.append)
    assert not ens.training and len(calls) == 2 * 100
    assert calls[-1].member == 1 and calls[-1].step == 100 and calls[-1].loss < calls[0].loss
    # trained on sampled feature rows, evaluated through the row-chunked projection path
    seen = torch.stack([(ens.predict(per_image[k]) == labels[k]).float().mean() for k in range(3)])
    unseen = (ens.predict(per_image[3]) == labels[3]).float().mean()
    assert seen.min() > 0.9 and unseen > 0.45  # three classes: chance is 1/3
    # same seed, same ensemble; features still attached to a graph are fine (training never needs their gradient)
    first = train_ensemble(per_image[:3], list(labels[:3]), 3, generator.feature_channels(), members=1, steps=3,
                           pixels_per_step=64, seed=0, hidden=(32, 16))
    attached = [[f.clone().requires_grad_(True) * 1 for f in image] for image in per_image[:3]]
    again = train_ensemble(attached, list(labels[:3]), 3, generator.feature_channels(), members=1, steps=3,
                           pixels_per_step=64, seed=0, hidden=(32, 16))
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), first.state_dict().values(), strict=True))


def test_train_ensemble_validates_labels(generator, features):
    one = [f[:1].float() for f in features]
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        train_ensemble([one], [torch.full((32, 32), 3)], 3, generator.feature_channels(), members=1, steps=1)
    with pytest.raises(ValueError, match="more feature sets than the 0 label maps"):
        train_ensemble([one], [], 3, generator.feature_channels(), members=1, steps=1)
    with pytest.raises(ValueError, match="as many feature sets as label maps, got 1 and 2"):
        train_ensemble(iter([one]), [torch.zeros(32, 32)] * 2, 3, generator.feature_channels(), members=1, steps=1)


@pytest.mark.parametrize("module", ["editgan_core.train.segmenter", "editgan_core.annotation.bench"])
def test_a_count_beyond_the_rendered_annotations_is_refused_before_loading(module, capsys):
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit):
        main(["--bundle", "no/such/bundle", "--count", "32"])
    err = capsys.readouterr().err
    assert "--count" in err and "1 to 16" in err and "--annotations" in err
