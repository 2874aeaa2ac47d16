"""The shared command prologue: every bundle command sets threads first and refuses a domain-less bundle alike."""

from __future__ import annotations

import pytest
import torch

from editgan_core.bundle import Bundle, write_manifest
from editgan_core.cli_common import command_parser, open_pipeline, parse_command
from editgan_core.eval import edit as eval_edit
from editgan_core.eval import embedding
from editgan_core.train import presets


def test_parse_command_sets_threads_and_open_pipeline_uses_the_device(tiny_bundle):
    parser = command_parser("doc", bundle=True, device=True)
    before = torch.get_num_threads()
    try:
        args = parse_command(parser, ["--bundle", str(tiny_bundle), "--device", "cpu",
                                      "--threads", str(before + 1)])
        assert torch.get_num_threads() == before + 1
    finally:
        torch.set_num_threads(before)
    pipe = open_pipeline(args, lpips=False)
    assert pipe.device == torch.device("cpu") and pipe.bundle.id == "tiny-test"
    assert parse_command(command_parser("doc", threads_default=None), []).threads is None


@pytest.mark.parametrize("main", [embedding.main, presets.main, eval_edit.main])
def test_bundle_commands_refuse_a_bundle_without_a_domain(tiny_bundle_copy, capsys, main):
    root = tiny_bundle_copy
    manifest = dict(Bundle.load(root).manifest)
    del manifest["domain"]
    write_manifest(root, manifest)
    with pytest.raises(SystemExit) as exc:
        main(["--bundle", str(root), "--device", "cpu"])
    assert exc.value.code == 2 and "names no procedural domain" in capsys.readouterr().err
