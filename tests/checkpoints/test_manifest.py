"""The official weights manifest: a well-formed registry users can reach by name."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

import checkpoints
from checkpoints import manifest
from checkpoints.errors import WeightsError

EXPECTED_NAMES = {
    "ffhq", "metfaces", "afhqcat", "afhqdog", "afhqwild",
    "stylegan2-ffhq-config-f", "stylegan2-car-config-f", "stylegan2-cat-config-f",
    "stylegan2-church-config-f", "stylegan2-horse-config-f", "wikiart", "landscape",
    "sgsim-resnet18", "audioclip-partial", "audioclip-full", "wav2clip",
    "lpips-vgg16", "arcface-ir-se50", "clip-vit-b-32", "clip-rn50",
    "e4e-ffhq", "e4e-cars", "e4e-horse", "e4e-church", "psp-ffhq",
}


def test_every_official_file_is_listed_once():
    names = [item.name for item in checkpoints.entries()]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_NAMES
    filenames = [item.filename for item in checkpoints.entries()]
    assert len(filenames) == len(set(filenames)), "two entries would share one cache file"


@pytest.mark.parametrize("item", checkpoints.entries(), ids=lambda item: item.name)
def test_entry_schema(item):
    assert item.urls and all(urlsplit(url).scheme == "https" and urlsplit(url).hostname for url in item.urls)
    assert item.format in manifest.formats()
    assert item.kind in manifest.kinds()
    assert item.size is None or (isinstance(item.size, int) and item.size > 0)
    assert item.sha256 is None or (len(item.sha256) == 64 and set(item.sha256) <= set("0123456789abcdef"))
    assert item.licence and item.description
    assert "/" not in item.filename and not item.filename.endswith(".part")


def test_formats_name_only_sniffable_containers():
    containers = {c for allowed in manifest.formats().values() for c in allowed}
    assert containers <= {"safetensors", "torchscript", "torch-zip", "torch-legacy", "pickle"}


def test_reference_facts_are_pinned():
    # docs/reference.md (#sgsim-audio-encoder, #audioclip, #wav2clip, #checkpoint-formats): formats the loaders depend on.
    assert checkpoints.entry("ffhq").format == "nvidia-pickle"
    assert checkpoints.entry("stylegan2-ffhq-config-f").format == "tf-pickle"
    assert checkpoints.entry("landscape").format == "rosinality-pt"
    assert checkpoints.entry("lpips-vgg16").format == "torchscript"
    assert checkpoints.entry("sgsim-resnet18").urls[0] == "https://kr.object.ncloudstorage.com/cvpr2022/resnet18_57.pth"
    assert {checkpoints.entry(n).kind for n in ("clip-vit-b-32", "clip-rn50")} == {"clip"}


def test_unknown_name_lists_close_names():
    with pytest.raises(WeightsError, match="unknown weights name 'fhq'.*ffhq"):
        checkpoints.entry("fhq")
