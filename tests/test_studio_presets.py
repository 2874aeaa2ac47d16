"""The studio's preset-from-pairs and dataset actions, in plain Python on the tiny bundle."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import test_webapp_logic as logic
from gradio_client import Client, handle_file
from PIL import Image

from editgan_core.pipeline import InputError
from editgan_core.train.preset_pairs import PresetResult
from webapp import labels as lab
from webapp.actions.presets import DatasetOutcome
from webapp.outcomes import Progress
from webapp.ui import build_demo, launch_kwargs

studio, box = logic.studio, logic.box  # the tiny-bundle studio and session fixtures


def test_edits_added_to_a_preset_are_learnt_into_a_gallery_vector(box, studio):
    session = studio.session(box)
    palette = studio.pipeline(session).bundle.palette
    with pytest.raises(InputError, match="paint a change"):
        studio.add_to_preset(session, "brows", None)
    for seed in range(3):
        studio.sample(session, seed)
        painted = lab.upscale(lab.colorize(logic._paint_eyebrows(session), palette), 8)
        message = studio.add_to_preset(session, "brows", painted)
    assert message.startswith("Added the painting on the canvas to preset **brows**: 3 pair(s), ready to learn")
    list(studio.edit(session, painted, 2))  # after learning an edit the canvas shows its result: the edit's pair
    message = studio.add_to_preset(session, "Brows", studio.view(session).editor["composite"])
    assert message.startswith("Added the edit learnt last to preset **brows**: 4 pair(s)")
    assert studio.preset_names(session) == [("brows (4 pairs)", "brows")]

    items = list(studio.learn_preset(session, "brows", 3, keep_parts=False))
    result = items[-1]
    assert isinstance(result, PresetResult) and sum(isinstance(i, Progress) for i in items) == 3
    assert result.used == 4 and result.vector.source == "preset-pairs" and "side_effects" not in result.vector.extra
    assert result.vector.extra["strength_iou"][f"{result.vector.default_scale:g}"] == max(
        result.vector.extra["strength_iou"].values())  # the strength that best redraws the paintings
    items = list(studio.learn_preset(session, "brows", 3))  # the page's default: the other parts kept
    steps = [i for i in items if isinstance(i, Progress)]
    assert len(steps) == 3 + 2 * 4 and steps[-1].step == steps[-1].steps == 11  # two rounds over the four pairs
    assert items[-1].vector.extra["side_effects"]["faces"] == 4
    pictures, names = studio.gallery(session)
    assert "brows" in names and pictures[names.index("brows")][0].ndim == 3
    with pytest.raises(InputError, match="no pairs yet"):
        list(studio.learn_preset(session, "unknown"))


def test_a_small_dataset_comes_as_a_zip(box, studio):
    session = studio.session(box)
    items = list(studio.dataset_zip(session, 3))
    outcome = items[-1]
    assert isinstance(outcome, DatasetOutcome) and outcome.report.written == 3
    assert any(isinstance(i, Progress) for i in items)
    names = zipfile.ZipFile(outcome.zip_path).namelist()
    assert {"dataset.json", "000002.png", "000002.labels.png", "previews/000002.png"} <= set(names)
    with pytest.raises(InputError, match="1 to 64"):
        list(studio.dataset_zip(session, 65))


@pytest.mark.slow
def test_presets_and_samples_through_the_page_api(tiny_bundle, tmp_path):
    """The named endpoints behind the buttons: add_to_preset (from the canvas), learn_preset, make_dataset."""
    demo = build_demo([tiny_bundle], device="cpu")
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    try:
        client = Client(url, verbose=False, download_files=False)
        palette = demo.studio.registry.bundle("tiny-test").palette
        for seed in range(3):
            labels = np.array(Image.open(client.predict(seed, 0.7, api_name="/sample")[3 + 1]["path"]))
            labels[6:14, 6:14] = palette[3]
            path = tmp_path / f"painted{seed}.png"
            Image.fromarray(labels).save(path)
            value = {"background": handle_file(str(path)), "layers": [], "composite": handle_file(str(path))}
            status, _ = client.predict("raised brows", value, api_name="/add_to_preset")
        assert "3 pair(s), ready to learn" in status
        streamed = client.submit("raised brows", 5, False, api_name="/learn_preset")
        streamed.result()
        assert "Learnt **raised brows** from 3 pairs" in streamed.outputs()[-1][0]
        job = client.submit(4, api_name="/make_dataset")
        job.result()
        zip_file, text = job.outputs()[-1]
        assert text.startswith("4 samples") and zipfile.is_zipfile(zip_file["path"] if isinstance(zip_file, dict)
                                                                   else zip_file)
    finally:
        demo.close()
