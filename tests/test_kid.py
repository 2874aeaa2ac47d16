"""KID: the unbiased estimator against a direct computation, its zero and its growth with a shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from editgan_core.eval.kid import kid, load_generator, main, mmd2_unbiased
from editgan_core.models.attribute_net import AttributeNet
from editgan_core.models.stylegan2 import Generator


def direct_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook loops: mean of k over distinct pairs within each set, minus twice the cross mean."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_matches_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.3, 1.2, size=(9, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(direct_mmd2(x, y), rel=1e-10)
    # one subset holding everything: kid() is exactly that estimate (same size sets, any order)
    x2 = rng.normal(size=(9, 5))
    result = kid(x2, y, subsets=3, subset_size=9)
    np.testing.assert_allclose(result.values, direct_mmd2(x2, y), rtol=1e-10)
    assert result.std == pytest.approx(0, abs=1e-12) and result.subset_size == 9


def test_same_distribution_near_zero_and_grows_with_shift():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 16))
    same = kid(rng.normal(size=(400, 16)), real, subsets=20, subset_size=200)
    assert abs(same.mean) < 3 * same.std + 1e-3
    # a set against itself: only the self-pairs k(x, x), present in the cross term alone, remain: slightly < 0
    identical = kid(real, real, subsets=1, subset_size=400).mean
    self_k = ((real * real).sum(1) / 16 + 1) ** 3
    assert -2 * self_k.mean() / 399 < identical <= 0
    shifts = [kid(rng.normal(size=(400, 16)) + s, real, subsets=20, subset_size=200).mean for s in (0.25, 0.5, 1.0)]
    assert same.mean < shifts[0] < shifts[1] < shifts[2]
    assert shifts[0] > 5 * same.std


def test_torch_input_and_errors():
    x = torch.randn(20, 4)
    assert np.isfinite(kid(x, x + 1, subsets=2, subset_size=10).mean)
    with pytest.raises(ValueError):
        kid(np.zeros((5, 3)), np.zeros((5, 4)))


def test_load_generator_run_folder(tmp_path):
    g = Generator(8, 16, 2, channels={4: 8, 8: 8})
    g.save(tmp_path / "generator_ema.safetensors", metadata={"images_seen": "1234"})
    loaded = load_generator(tmp_path)
    assert loaded.images_seen == 1234 and loaded.generator.size == 8
    for k, v in g.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[k], v)
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "nothing")


def test_cli_end_to_end_on_tiny_models(tmp_path, capsys):
    torch.manual_seed(0)
    g = Generator(16, 16, 2, channels={4: 8, 8: 8, 16: 8})
    g.save(tmp_path / "generator_ema.safetensors", metadata={"images_seen": "5000"})
    net = AttributeNet({"smile": (-1.0, 1.0)}, input_size=16, channels=(4, 8), hidden=8)
    net.save(tmp_path / "net.safetensors")
    main(["--generator", str(tmp_path), "--attribute-net", str(tmp_path / "net.safetensors"), "--n", "6",
          "--subsets", "3", "--truncation", "0.7", "--threads", str(torch.get_num_threads())])
    out = capsys.readouterr().out
    assert "KID(model)" in out and "KID floor" in out and "5.0 kimg" in out and "3 subsets of 3" in out
