"""sgsim.lpips: NVIDIA's TorchScript vgg16.pt format is read without running its code, and the distance is LPIPS."""

from __future__ import annotations

import pickle
import struct
import tracemalloc
import warnings
import zipfile

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgsim.errors import NetworkFileError
from sgsim.lpips import LpipsDistance, read_lpips, read_torchscript_tensors
from tolerances import LAMBDA, U, assert_relative_close, parity_tolerance

WIDTHS = (4, 8, 8, 16, 16)  # a narrow VGG16 with the real layer count and names
STAGES = (2, 2, 3, 3, 3)


class _VggLayers(nn.Module):
    """Holds conv1..conv13 and fc1..fc3 under the attribute names of NVIDIA's vgg16.pt."""

    def __init__(self):
        super().__init__()
        in_channels, index = 3, 1
        for width, count in zip(WIDTHS, STAGES):
            for _ in range(count):
                setattr(self, f"conv{index}", nn.Conv2d(in_channels, width, 3, padding=1))
                in_channels, index = width, index + 1
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 4)


class _ReferenceVgg16(nn.Module):
    """A stand-in for vgg16.pt: forward(img in [0, 255], resize_images, return_lpips) like NVIDIA's signature.

    Written as LPIPS is published: sum over stages of the spatial mean of sum_c w_c (unit(f0) - unit(f1))^2,
    here returned as per-image features whose squared distance is that sum.
    """

    def __init__(self):
        super().__init__()
        self.layers = _VggLayers()
        gen = torch.Generator().manual_seed(5)
        self.lpips0 = nn.Parameter(torch.rand(WIDTHS[0], 1, 1, generator=gen))
        self.lpips1 = nn.Parameter(torch.rand(WIDTHS[1], 1, 1, generator=gen))
        self.lpips2 = nn.Parameter(torch.rand(WIDTHS[2], 1, 1, generator=gen))
        self.lpips3 = nn.Parameter(torch.rand(WIDTHS[3], 1, 1, generator=gen))
        self.lpips4 = nn.Parameter(torch.rand(WIDTHS[4], 1, 1, generator=gen))

    def forward(self, img: torch.Tensor, resize_images: bool = False, return_lpips: bool = True) -> torch.Tensor:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (img / 255.0 - mean) / std
        L = self.layers
        x = F.relu(L.conv2(F.relu(L.conv1(x))))
        f1 = x
        x = F.relu(L.conv4(F.relu(L.conv3(F.max_pool2d(x, 2)))))
        f2 = x
        x = F.relu(L.conv7(F.relu(L.conv6(F.relu(L.conv5(F.max_pool2d(x, 2)))))))
        f3 = x
        x = F.relu(L.conv10(F.relu(L.conv9(F.relu(L.conv8(F.max_pool2d(x, 2)))))))
        f4 = x
        x = F.relu(L.conv13(F.relu(L.conv12(F.relu(L.conv11(F.max_pool2d(x, 2)))))))
        f5 = x
        out = []
        for f, w in [(f1, self.lpips0), (f2, self.lpips1), (f3, self.lpips2), (f4, self.lpips3), (f5, self.lpips4)]:
            f = f / (torch.linalg.vector_norm(f, 2.0, [1], True) + 1e-10)
            out.append((f * w.sqrt() / float(f.shape[2] * f.shape[3]) ** 0.5).flatten(1))
        return torch.cat(out, dim=1)


def _published_lpips(reference: _ReferenceVgg16, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS in its published form (spatial mean of channel-weighted squared unit-feature differences)."""
    fa = reference(((a + 1) * 127.5))
    fb = reference(((b + 1) * 127.5))
    return (fa - fb).square().sum(dim=1)


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory, random_weights):
    reference = _ReferenceVgg16()
    state = random_weights(reference.state_dict(), 3)
    state.update({k: v.abs() for k, v in state.items() if k.startswith("lpips")})  # LPIPS weights are non-negative
    reference.load_state_dict(state)
    path = tmp_path_factory.mktemp("lpips") / "vgg16.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, but vgg16.pt was made with it
        torch.jit.script(reference.eval()).save(str(path))
    return reference, path


def test_feature_vector_has_the_length_nvidia_vgg16_returns():
    """vgg16.pt(img, resize_images=False, return_lpips=True) on a 32 px image gives [1, 124928] (a printed shape in a
    public projector fork): every ReLU stage output at full size, 64*32^2 + 128*16^2 + 256*8^2 + 512*4^2 + 512*2^2."""
    with torch.no_grad():
        assert LpipsDistance().features(torch.zeros(1, 3, 32, 32)).shape == (1, 124928)


def test_reader_recovers_every_tensor_of_a_torchscript_archive(reference_file):
    reference, path = reference_file
    tensors = read_torchscript_tensors(path, lambda name: True)
    expected = reference.state_dict()
    assert set(tensors) == set(expected)
    for name, value in expected.items():
        assert torch.equal(tensors[name], value), name


def test_loading_never_calls_torch_jit_load(reference_file, monkeypatch):
    _, path = reference_file

    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load would run code from the file")

    monkeypatch.setattr(torch.jit, "load", refuse)
    net = read_lpips(path)
    assert isinstance(net, LpipsDistance) and not net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_classifier_layers_are_not_loaded(reference_file):
    _, path = reference_file
    assert not any(name.startswith("layers.fc") for name in read_lpips(path).state_dict())


def feature_tolerance(net: LpipsDistance) -> float:
    """Relative L2 difference two float32 runs of the VGG features may show: parity_tolerance over the widest 3x3
    convolution and the 13 convolutions (tests/tolerances.py); the per-pixel unit normalisation sums one channel
    vector, far shorter than the convolutions' reductions."""
    return parity_tolerance(net.layers)


def distance_tolerance(net: LpipsDistance, features_a: torch.Tensor, features_b: torch.Tensor) -> torch.Tensor:
    """Relative error of d = ||fa - fb||^2 per image when each feature vector differs from the reference's by e (relative L2):
    |dd| <= 2 ||fa - fb|| (||dfa|| + ||dfb||) <= 2 e ||fa - fb|| (||fa|| + ||fb||), plus both final sums' rounding."""
    e = feature_tolerance(net)
    spread = (features_a.norm(dim=1) + features_b.norm(dim=1)) / (features_a - features_b).norm(dim=1)
    return 2 * e * spread + 2 * LAMBDA * features_a.shape[1] ** 0.5 * U


def assert_matches_reference(net: LpipsDistance, reference: _ReferenceVgg16, a: torch.Tensor, b: torch.Tensor) -> None:
    """Features in relative L2 and distances in relative error, each within its float32 bound."""
    fa, fb = reference((a + 1) * 127.5), reference((b + 1) * 127.5)
    for ours, expected in zip(net.features(a), fa):
        assert_relative_close(ours, expected, feature_tolerance(net), "features")
    relative_error = (net(a, b) - _published_lpips(reference, a, b)).abs() / _published_lpips(reference, a, b)
    assert bool((relative_error <= distance_tolerance(net, fa, fb)).all()), f"distance relative error {relative_error}"


def seeded_images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1, torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1


def test_distance_matches_the_reference_module(reference_file):
    reference, path = reference_file
    with torch.no_grad():
        assert_matches_reference(read_lpips(path), reference, *seeded_images())


def test_colour_channels_in_bgr_order_fail_the_comparison(reference_file, monkeypatch):
    """The input scaling's shift and scale taken in BGR order: a mistake a port could make, and the bound must see it."""
    reference, path = reference_file
    net = read_lpips(path)
    net.shift, net.scale = net.shift.flip(1), net.scale.flip(1)
    with torch.no_grad(), pytest.raises(AssertionError, match="relative L2 error"):
        assert_matches_reference(net, reference, *seeded_images())


def test_lpips_weights_stored_as_conv_kernels_are_accepted(reference_file, tmp_path):
    reference, _ = reference_file
    kernels = _ReferenceVgg16()
    kernels.load_state_dict(reference.state_dict())
    for stage in range(5):
        setattr(kernels, f"lpips{stage}", nn.Parameter(getattr(reference, f"lpips{stage}").detach()[None]))  # [1, C, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(kernels.eval()).save(str(tmp_path / "kernels.pt"))
    loaded = read_lpips(tmp_path / "kernels.pt")
    assert torch.equal(loaded.lpips3, reference.lpips3.detach())


def test_distance_is_zero_for_identical_images_and_symmetric(reference_file):
    net = read_lpips(reference_file[1])
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    b = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    assert torch.equal(net(a, a), torch.zeros(2))
    assert torch.equal(net(a, b), net(b, a))
    assert bool((net(a, b) > 0).all())


def test_gradient_reaches_the_image(reference_file):
    net = read_lpips(reference_file[1])
    gen = torch.Generator().manual_seed(2)
    a = (torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1).requires_grad_(True)
    net(a, torch.zeros(1, 3, 32, 32)).sum().backward()
    assert float(a.grad.abs().sum()) > 0


def test_archive_naming_a_foreign_global_is_refused_without_running_it(tmp_path):
    class Payload:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code from the file ran')",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(Payload(), protocol=2))
    with pytest.raises(NetworkFileError, match=r"evil.pt names the global .*exec"):
        read_lpips(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"plain text", "not a readable TorchScript archive"), (None, "not found")],
    ids=["not-a-zip", "missing"],
)
def test_unusable_files_are_errors_naming_them(tmp_path, content, message):
    path = tmp_path / "vgg16.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(NetworkFileError, match=message):
        read_lpips(path)


def test_torchscript_without_lpips_weights_is_a_clear_error(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(nn.Linear(2, 2)).save(str(tmp_path / "linear.pt"))
    with pytest.raises(NetworkFileError, match="linear.pt has no LPIPS weights"):
        read_lpips(tmp_path / "linear.pt")


def test_named_weights_come_from_the_cache_and_absence_means_none(reference_file, tmp_path, monkeypatch):
    import shutil

    from sgsim.lpips import load_lpips_if_present

    monkeypatch.setenv("SGSIM_HOME", str(tmp_path))
    assert load_lpips_if_present() is None
    (tmp_path / "weights").mkdir()
    shutil.copy(reference_file[1], tmp_path / "weights" / "lpips-vgg16.pt")  # the manifest's file name
    assert isinstance(load_lpips_if_present(), LpipsDistance)


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT: signed, so a forged stride may be negative


def _text(value: str) -> bytes:
    return b"X" + struct.pack("<I", len(value)) + value.encode()  # BINUNICODE


def forged_archive(path, *, numel: int, offset: int = 0, size=(4,), stride=(1,), data: bytes | None = None,
                   state: bytes | None = None):
    """A TorchScript-shaped zip whose data.pkl, written opcode by opcode, holds one tensor `lpips0` as given."""
    storage = b"(" + _text("storage") + b"ctorch\nFloatStorage\n" + _text("0") + _text("cpu") + _int(numel) + b"tQ"
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + _int(offset) + b"(" + b"".join(map(_int, size)) + b"t("
              + b"".join(map(_int, stride)) + b"t\x89}tR")
    fields = state if state is not None else b"}(" + _text("lpips0") + tensor + b"u"
    pickled = b"\x80\x02c__torch__\nM\n)\x81" + fields + b"b."
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m/data.pkl", pickled)
        archive.writestr("m/data/0", data if data is not None else bytes(4 * numel))
    return path


FORGED = {  # name: (forged_archive keywords, message)
    "view-past-storage": ({"numel": 4, "size": (100,)}, "reaches past its storage of 4 elements"),
    "negative-stride": ({"numel": 4, "size": (2,), "stride": (-1,)}, "non-negative integers"),
    "negative-offset": ({"numel": 4, "offset": -3}, "non-negative integers"),
    "size-stride-lengths": ({"numel": 4, "size": (2, 2), "stride": (1,)}, "of one length"),
    "state-a-list": ({"numel": 4, "state": b"]"}, "state in data.pkl is a list"),
    "negative-storage-length": ({"numel": -5, "data": b""}, "has length -5"),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_forged_archives_are_one_line_errors(tmp_path, reference_file, case):
    keywords, message = FORGED[case]
    with pytest.raises(NetworkFileError, match=message) as error:
        read_lpips(forged_archive(tmp_path / "vgg16.pt", **keywords))
    assert "\n" not in str(error.value)
    assert isinstance(read_lpips(reference_file[1]), LpipsDistance)  # the valid file after it still loads


@pytest.mark.parametrize(("numel", "stored"), [(1000, 256 << 20), (64 << 20, 256 << 20)], ids=["size-mismatch", "huge-claim"])
def test_a_zip_bomb_storage_is_refused_before_it_is_read(tmp_path, numel, stored):
    """256 MiB of zeros deflate to ~250 KB; the reader used to inflate all of it before checking its length."""
    path = forged_archive(tmp_path / "vgg16.pt", numel=numel, data=bytes(stored))
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(NetworkFileError, match="expected|more than any LPIPS-VGG16 tensor"):
            read_lpips(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
