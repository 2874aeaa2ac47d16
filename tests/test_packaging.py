"""The repo as a Space (README front matter) and as a package (pyproject, wheel, console scripts)."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest
import yaml
from huggingface_hub import SpaceHardware
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from editgan_core.commands import COMMANDS, GROUPS

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
SPACE_KEYS = {"title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version", "app_file",
              "suggested_hardware", "short_description", "license", "pinned", "preload_from_hub", "models", "tags"}
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def front_matter() -> tuple[dict, str]:
    """(the README's YAML front matter, the text after it)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "the Space front matter must be the README's first line"
    head, sep, body = text[4:].partition("\n---\n")
    assert sep, "the front matter is not closed by a --- line"
    return yaml.safe_load(head), body


def requirements() -> dict[str, Requirement]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    reqs = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_readme_front_matter_is_a_valid_space_config() -> None:
    meta, _ = front_matter()
    assert set(meta) <= SPACE_KEYS, f"unknown Space keys: {set(meta) - SPACE_KEYS}"
    assert meta["sdk"] == "gradio" and (REPO / meta["app_file"]).is_file() and meta["app_file"] == "app.py"
    gradio_pin = requirements()["gradio"].specifier
    assert str(gradio_pin) == f"=={meta['sdk_version']}", "sdk_version must be the gradio version requirements pin"
    assert isinstance(meta["python_version"], str), "quote python_version: YAML reads 3.10 as 3.1"
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(meta["python_version"] + ".0")
    assert meta["suggested_hardware"] in {h.value for h in SpaceHardware}
    assert {meta["colorFrom"], meta["colorTo"]} <= COLOURS
    assert len(meta["short_description"]) <= 60 and meta["title"]
    for entry in meta.get("preload_from_hub", []):
        assert isinstance(entry, str) and entry.split()[0].count("/") == 1


def test_the_two_commands_come_first_after_the_front_matter() -> None:
    _, body = front_matter()
    block = body.lstrip("\n")
    assert block.startswith("```bash\n")
    commands = block[len("```bash\n"):].split("```", 1)[0].strip().splitlines()
    assert commands == ["pip install -r requirements.txt && python app.py",
                        "pip install -r requirements-dev.txt && python -m pytest"]


def test_pyproject_declares_what_requirements_pin() -> None:
    declared = {r.name.lower().replace("_", "-"): r for r in map(Requirement, pyproject()["project"]["dependencies"])}
    pinned = {k: str(v.specifier) for k, v in requirements().items()}
    assert {k: str(v.specifier) for k, v in declared.items()} == pinned
    assert str(declared["torch"].specifier) == "==2.13.0"


def test_console_scripts_point_at_callables() -> None:
    scripts = pyproject()["project"]["scripts"]
    assert set(scripts) == {"editgan-studio", "editgan"}
    for target in scripts.values():
        module, _, func = target.partition(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_editgan_dispatches_to_every_command(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from editgan_core import commands

    seen = []
    monkeypatch.setattr(commands, "_run", lambda module, argv, name: seen.append((module, argv, name)) or 0)
    assert commands.main(["apply", "--bundle", "b", "in", "out"]) == 0
    assert commands.main(["train-gan", "--kimg", "1"]) == 0
    assert commands.main(["eval", "kid", "--n", "10"]) == 0
    assert seen == [("editgan_core.cli", ["apply", "--bundle", "b", "in", "out"], "editgan"),
                    ("editgan_core.train.gan", ["--kimg", "1"], "editgan train-gan"),
                    ("editgan_core.eval.kid", ["--n", "10"], "editgan eval kid")]
    assert commands.main(["bench"]) == 2 and "'bench' needs one of: ops, render" in capsys.readouterr().err
    assert commands.main(["nope"]) == 2
    for module, _ in [*COMMANDS.values(), *(m for g in GROUPS.values() for m in g.values())]:
        assert callable(importlib.import_module(module).main)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_page(url: str, process: subprocess.Popen, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            pytest.fail(f"editgan-studio exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"no page at {url} after {timeout} s")


@pytest.mark.slow
def test_wheel_installs_and_serves_from_outside_the_checkout(tmp_path: Path, tiny_bundle: Path) -> None:
    """Build the wheel from a clean copy, install it into a fresh venv that reuses this torch and gradio, and
    start editgan-studio on a bundle from another folder: the page answers, the package holds its data."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("editgan_core", "webapp"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("editgan_studio-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"webapp/examples/face_003.png", "editgan_core/templates/faces_celebamask.json"} <= set(names)
    assert any(n.startswith("editgan_core/ops/cuda/") and n.endswith(".cu") for n in names), "CUDA sources missing"
    assert not any(n.startswith(("tests/", "checkpoints/", "editgan_core/gpu_run/")) for n in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   timeout=600)
    where = subprocess.run([python, "-c", "import editgan_core, webapp; print(editgan_core.__file__, webapp.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(REPO) not in where and str(env_dir) in where
    sources = ("from editgan_core.ops import cuda_ext as c; "
               "print(all((c.CUDA_SOURCES / s).is_file() for f in c.EXTENSIONS.values() for s in f), c.CUDA_SOURCES)")
    found = subprocess.run([python, "-c", sources], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert found.startswith("True ") and str(env_dir) in found  # the installed copy finds its own kernels

    # EDITGAN_WHEEL_BUNDLE=checkpoints/faces64 times the page on the demo bundle instead of the tiny one
    chosen = Path(os.environ.get("EDITGAN_WHEEL_BUNDLE") or tiny_bundle).resolve()
    bundle = shutil.copytree(chosen, tmp_path / "elsewhere" / chosen.name)
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1", "EDITGAN_HOME": str(tmp_path / "home"),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": ""}
    process = subprocess.Popen([env_dir / "bin" / "editgan-studio", "--bundle", str(bundle), "--device", "cpu"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = _wait_for_page(f"http://127.0.0.1:{port}/", process, timeout=240)
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    print(f"wheel {wheel.stat().st_size / 1024:.0f} KiB, {len(names)} files; page ready after {ready:.1f} s "
          f"on {chosen.name}")
    assert "LPIPS weights not on disk and not downloaded (offline: HF_HUB_OFFLINE is set)" in output
