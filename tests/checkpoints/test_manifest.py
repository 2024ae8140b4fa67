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
    *(f"stylegan3-{model}" for model in (
        "t-ffhq-1024x1024", "t-ffhqu-1024x1024", "t-ffhqu-256x256", "r-ffhq-1024x1024", "r-ffhqu-1024x1024", "r-ffhqu-256x256",
        "t-metfaces-1024x1024", "t-metfacesu-1024x1024", "r-metfaces-1024x1024", "r-metfacesu-1024x1024",
        "t-afhqv2-512x512", "r-afhqv2-512x512")),
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


def test_every_generator_says_what_it_draws():
    # The domain is what presets and photo alignment read (sgsim.editing.presets.generator_kind); other kinds have none.
    domains = {item.name: item.domain for item in checkpoints.entries() if item.kind == "generator"}
    aligned = {f"stylegan3-{c}-{faces}-1024x1024" for c in "tr" for faces in ("ffhq", "metfaces")}
    assert {name for name, domain in domains.items() if domain == "faces"} == {"ffhq", "metfaces", "stylegan2-ffhq-config-f", *aligned}
    assert {name for name, domain in domains.items() if domain == "faces-unaligned"} == {  # StyleGAN3's -U models
        f"stylegan3-{c}-{faces}" for c in "tr" for faces in ("ffhqu-1024x1024", "ffhqu-256x256", "metfacesu-1024x1024")}
    assert domains["wikiart"] == "art" and domains["landscape"] == domains["stylegan2-church-config-f"] == "scenes"
    assert all(item.domain is None for item in checkpoints.entries() if item.kind != "generator")


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
    # NVlabs/stylegan3 README: NGC serves the StyleGAN3 pickles under the licence of that repository.
    sg3 = checkpoints.entry("stylegan3-r-afhqv2-512x512")
    assert list(sg3.urls) == ["https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/stylegan3-r-afhqv2-512x512.pkl"]
    assert sg3.format == "nvidia-pickle" and "StyleGAN3" in sg3.licence and "non-commercial" in sg3.licence


def test_unknown_name_lists_close_names():
    with pytest.raises(WeightsError, match="unknown weights name 'fhq'.*ffhq"):
        checkpoints.entry("fhq")


@pytest.mark.parametrize("item", checkpoints.entries(), ids=lambda item: item.name)
def test_published_checksums_are_whole_and_pinned(item):
    """A stated size and sha256 come together, and a Hugging Face URL names the revision they were published at."""
    assert (item.size is None) == (item.sha256 is None)
    if item.sha256 is not None:
        assert len(item.sha256) == 64 and int(item.sha256, 16) >= 0 and item.sha256 == item.sha256.lower()
        assert isinstance(item.size, int) and item.size > 0
        for url in item.urls:
            if urlsplit(url).hostname == "huggingface.co":
                revision = urlsplit(url).path.split("/resolve/")[1].split("/")[0]
                assert len(revision) == 40, f"{url} must pin the revision whose LFS sha256 the manifest states"


@pytest.mark.parametrize("item", checkpoints.entries(), ids=lambda item: item.name)
def test_every_entry_says_what_its_file_must_hold(item):
    required = {"generator": {"resolution", "w_plus_rows"}, "audio-encoder": {"encoder", "embed_dim"},
                "clip": {"clip_model", "embed_dim"}, "lpips": {"network"}, "identity": {"network"},
                "photo-encoder": {"resolution", "w_plus_rows"}}[item.kind]
    assert set(item.expects) == required
    if item.kind == "generator" and item.name.startswith("stylegan3-"):  # NVIDIA's StyleGAN3: 14 layers + 2 rows
        assert item.expects["w_plus_rows"] == 16
    elif item.kind in ("generator", "photo-encoder"):  # StyleGAN2 has two W+ rows per resolution from 8 px up, plus 4 px's two
        assert item.expects["w_plus_rows"] == 2 * item.expects["resolution"].bit_length() - 4
