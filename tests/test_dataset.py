"""``editgan dataset``: generated images with predicted label maps, filtered by ensemble disagreement,
resumable, refusing to mix settings, sharded like the batch CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from editgan_core.commands import main as editgan
from editgan_core.dataset import DatasetSettings, label_draws, main
from editgan_core.pipeline import EditGANPipeline


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def items(out) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("0*.json"))}


def test_writes_n_labelled_items_and_resumes(tmp_path, tiny_bundle, capsys) -> None:
    out = tmp_path / "data"
    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--out", str(out), "--max-disagreement", "1"]
    assert editgan(["dataset", *common, "--n", "3", "--latents"]) == 0
    assert list(items(out)) == ["000000", "000001", "000002"]
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    render = pipe.render(pipe.sample_latent(1))  # item i is the face of seed i, as the studio samples it
    assert np.array_equal(np.array(Image.open(out / "000001.png")), render.image)
    labels = np.array(Image.open(out / "000001.labels.png"))
    assert Image.open(out / "000001.labels.png").mode == "L" and np.array_equal(labels, render.labels)
    assert np.array_equal(np.array(Image.open(out / "previews" / "000001.png")), pipe.bundle.palette[labels])
    assert (out / "000002.latent.safetensors").is_file()
    record = json.loads((out / "dataset.json").read_text())
    assert [c["name"] for c in record["classes"]] == [c.name for c in pipe.bundle.classes]
    capsys.readouterr()

    before = (out / "000000.json").stat().st_mtime_ns
    assert main([*common, "--n", "5"]) == 0  # a larger --n extends: the first three are kept
    assert "2 written (0 redone), 3 already done" in capsys.readouterr().out
    assert (out / "000000.json").stat().st_mtime_ns == before and len(items(out)) == 5

    assert main([*common, "--n", "5", "--truncation", "0.5"]) == 2  # other settings: refused, nothing touched
    assert "made with other settings" in capsys.readouterr().err
    assert all(item["settings"]["truncation"] == 0.7 for item in items(out).values())
    assert main([*common, "--n", "5", "--truncation", "0.5", "--overwrite"]) == 0
    assert "5 written (5 redone)" in capsys.readouterr().out
    assert all(item["settings"]["truncation"] == 0.5 for item in items(out).values())


def test_disagreement_filter_drops_uncertain_draws(tmp_path, tiny_bundle, capsys) -> None:
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    settings = DatasetSettings()
    scores = label_draws(pipe, torch.cat([pipe.sample_latent(s) for s in range(8)]))[2]
    cut = float(np.median(scores))  # half the first draws score above it: some must be dropped
    out = tmp_path / "data"
    args = ["--bundle", str(tiny_bundle), "--device", "cpu", "--out", str(out), "--n", "8",
            "--max-disagreement", str(cut), "--max-draws", "20"]
    assert main(args) == 0
    text = capsys.readouterr().out
    written = items(out)
    dropped = sum(len(item["rejected"]) for item in written.values())
    assert len(written) == 8 and dropped >= 1 and f"{dropped} draw(s) dropped" in text
    assert all(item["disagreement"] <= cut for item in written.values())
    assert all(score > cut for item in written.values() for _, score in item["rejected"])
    kept_first = {int(k) for k, item in written.items() if item["seed"] == int(k) + settings.seed}
    assert kept_first == {i for i in range(8) if scores[i] <= cut}

    assert main([*args[:-4], "--out", str(tmp_path / "none"), "--max-disagreement", "0", "--max-draws", "2"]) == 1
    assert "no draw under the threshold" in capsys.readouterr().err

    calibrated = tmp_path / "calibrated"  # default: DatasetGAN's "drop the most uncertain tenth"
    assert main([*args[:6], "--out", str(calibrated), "--n", "4", "--drop-fraction", "0.5"]) == 0
    thresholds = {item["threshold"] for item in items(calibrated).values()}
    assert len(thresholds) == 1 and 0 < thresholds.pop() < 1


def test_shards_write_disjoint_items_that_make_the_whole(tmp_path, tiny_bundle, capsys) -> None:
    out = tmp_path / "data"
    common = ["--bundle", str(tiny_bundle), "--device", "cpu", "--out", str(out), "--n", "5",
              "--max-disagreement", "1"]
    assert main([*common, "--shard", "1/2"]) == 0
    assert list(items(out)) == ["000001", "000003"]
    assert "(shard 1/2: 2 of 5 items)" in capsys.readouterr().out
    assert main([*common, "--shard", "0/2"]) == 0
    assert list(items(out)) == [f"{i:06d}" for i in range(5)]
    assert main(common) == 0
    assert "0 written (0 redone), 5 already done" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [(["--n", "0"], "--n must be"),
                                                (["--n", "2", "--max-disagreement", "2"], "must be in"),
                                                (["--n", "2", "--max-draws", "0"], "--max-draws must be")])
def test_bad_options_are_refused(tmp_path, tiny_bundle, capsys, extra, message) -> None:
    with pytest.raises(SystemExit):
        main(["--bundle", str(tiny_bundle), "--out", str(tmp_path / "d"), *extra])
    assert message in capsys.readouterr().err


def test_one_pass_gives_the_labels_and_the_disagreement_of_two(tiny_bundle) -> None:
    pipe = EditGANPipeline.from_pretrained(tiny_bundle, device="cpu", lpips=False)
    with torch.no_grad():
        out = pipe.generator.synthesis(torch.cat([pipe.sample_latent(s) for s in range(3)]), noise=pipe.noise,
                                       return_features=True)
    labels, pixels = pipe.segmenter.predict_with_disagreement(out.features)
    assert torch.equal(labels, pipe.segmenter.predict(out.features))
    assert torch.equal(pixels, pipe.segmenter.uncertainty(out.features, kind="disagreement"))
    assert pixels.max() > 0  # the colour-fitted members do disagree somewhere, so the comparison means something
