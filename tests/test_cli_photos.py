"""``python -m editgan_core apply --align --paste-back`` on in-the-wild composites (issue #21)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from editgan_core.cli import main as cli_main
from editgan_core.latents import load_latent
from editgan_core.photos.synthetic import make_composite

DEMO = Path(__file__).resolve().parents[1] / "checkpoints" / "faces64"


def test_batch_align_and_paste_back(tmp_path, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    comp = make_composite(3)
    Image.fromarray(comp.photo).save(photos / "face.png")
    (photos / "face.align.json").write_text(json.dumps({k: list(v) for k, v in comp.landmarks.items()}))
    other = make_composite(8)
    Image.fromarray(other.photo).save(photos / "boxed.jpg", quality=95)
    quad = other.alignment.quad()
    table = {"boxed.jpg": {"box": [*quad.min(axis=0).tolist(), *quad.max(axis=0).tolist()]}}
    (tmp_path / "marks.json").write_text(json.dumps(table))
    Image.new("RGB", (50, 40)).save(photos / "unmarked.png")
    args = ["apply", str(photos), str(out), "--bundle", str(DEMO), "--device", "cpu", "--embed-steps", "0",
            "--vector", "smile=1.0", "--align", "--landmarks", str(tmp_path / "marks.json"), "--paste-back"]
    assert cli_main(args) == 1  # unmarked.png has no points: reported, and the run says so in its status
    captured = capsys.readouterr()
    assert "no points for unmarked.png" in captured.out + captured.err
    assert "2 written" in captured.out

    pasted = np.asarray(Image.open(out / "face.photo.png"))
    assert pasted.shape == (768, 1024, 3)
    differs = (pasted != comp.photo).any(axis=2)
    mouth = np.rint(comp.landmarks["mouth"]).astype(int)
    assert differs[mouth[1] - 15: mouth[1] + 15, mouth[0] - 15: mouth[0] + 15].any()
    ys, xs = np.nonzero(differs)  # only around the face: the edit region, mapped into the photo
    assert np.hypot(xs - mouth[0], ys - mouth[1]).max() < comp.alignment.scale * 40
    with Image.open(out / "boxed.photo.jpg") as boxed:
        assert boxed.format == "JPEG" and boxed.size == (1024, 768)
    assert Image.open(out / "face.png").size == (64, 64)
    record = load_latent(out / "face.latent.safetensors")
    assert record.source["alignment"]["size"] == 64 and record.run["align"] and record.run["paste_back"]

    assert cli_main(args) == 1  # a rerun finds the outputs made the same way (unmarked.png still fails)
    assert "0 written (0 redone), 2 already done" in capsys.readouterr().out
