"""sgsim.identity: ArcFace IR-SE50 loads TreB1eN's key layout strictly, and the identity loss sends gradient to the edit."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgsim import identity
from sgsim.errors import NetworkFileError
from sgsim.identity import IR_SE50, ArcFace, IdentityLoss, IrSeConfig, read_arcface
from tolerances import LAMBDA, U, assert_embedding_close, parity_tolerance

# A narrow network with the IR-SE50 structure, for fast forward/backward checks.
TINY = IrSeConfig(stem_channels=8, stages=((8, 1), (16, 2), (16, 1), (32, 1)), se_reduction=4, embedding_dim=16)


@pytest.fixture(scope="module")
def tiny_net(random_weights):
    net = ArcFace(TINY)
    net.load_state_dict(random_weights(net.state_dict(), 7))
    for module in net.modules():  # unit BatchNorm gains, so random features still depend on the input
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.weight.data.fill_(1.0)
    return net.eval().requires_grad_(False)


def test_ir_se50_has_the_treb1en_key_layout():
    state = ArcFace(IR_SE50).state_dict()
    # 7 stem keys, 24 units x 15 keys, 3 projection shortcuts x 6 keys, 12 output keys.
    assert len(state) == 7 + 24 * 15 + 3 * 6 + 12
    expected_shapes = {
        "input_layer.0.weight": (64, 3, 3, 3),
        "input_layer.2.weight": (64,),
        "body.0.res_layer.1.weight": (64, 64, 3, 3),
        "body.0.res_layer.5.fc1.weight": (4, 64, 1, 1),
        "body.0.res_layer.5.fc2.weight": (64, 4, 1, 1),
        "body.3.shortcut_layer.0.weight": (128, 64, 1, 1),
        "body.3.shortcut_layer.1.running_var": (128,),
        "body.7.shortcut_layer.0.weight": (256, 128, 1, 1),
        "body.21.shortcut_layer.0.weight": (512, 256, 1, 1),
        "body.23.res_layer.3.weight": (512, 512, 3, 3),
        "output_layer.0.running_mean": (512,),
        "output_layer.3.weight": (512, 512 * 7 * 7),
        "output_layer.4.running_var": (512,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(key.startswith("body.0.shortcut_layer") for key in state)  # same width: parameter-free subsampling


def test_ir_se50_embeds_a_112_px_face_as_a_512_d_unit_vector():
    with torch.no_grad():
        embedding = ArcFace(IR_SE50).eval()(torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0)))
    assert embedding.shape == (1, 512)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(1))


def test_state_dict_file_loads_strictly_for_inference(tmp_path, random_weights):
    weights = random_weights(ArcFace(TINY).state_dict(), 0)
    torch.save(weights, tmp_path / "model_ir_se50.pth")
    net = read_arcface(tmp_path / "model_ir_se50.pth", TINY)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert all(torch.equal(net.state_dict()[key], value) for key, value in weights.items())


def test_file_without_batch_counters_still_loads(tmp_path, random_weights):
    """Files saved before PyTorch 0.4.1 have no num_batches_tracked; BatchNorm fills it in."""
    net = ArcFace(TINY)
    weights = {k: v for k, v in random_weights(net.state_dict(), 1).items() if "num_batches_tracked" not in k}
    torch.save(weights, tmp_path / "old.pth")
    assert read_arcface(tmp_path / "old.pth", TINY)


def test_foreign_state_dict_is_a_clear_error(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "resnet.pth")
    with pytest.raises(NetworkFileError, match="resnet.pth.*ArcFace IR-SE50 layout"):
        read_arcface(tmp_path / "resnet.pth")


def test_non_checkpoint_and_code_carrying_files_are_refused(tmp_path):
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(NetworkFileError, match="notes.pth"):
        read_arcface(tmp_path / "notes.pth")

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(NetworkFileError, match="evil.pth"):
        read_arcface(tmp_path / "evil.pth")


@pytest.fixture(scope="module")
def styleclip_golden() -> dict[str, np.ndarray]:
    """StyleCLIP's Backbone + IDLoss.extract_feats on seeded weights and seeded faces (tests/data/identity/README.md)."""
    with np.load(Path(__file__).resolve().parents[1] / "data" / "identity" / "styleclip_arcface_seed11.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def seeded_ir_se50(random_weights) -> ArcFace:
    """IR-SE50 with the golden run's seeded weights (unit BatchNorm gains, as that run set them)."""
    net = ArcFace(IR_SE50)
    state = random_weights(net.state_dict(), 11)
    for key, value in state.items():
        if key.endswith("weight") and value.dim() == 1 and key.replace("weight", "running_var") in state:
            state[key] = torch.ones_like(value)
    net.load_state_dict(state)
    return net.eval()


def golden_faces() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 256, 256, generator=gen) * 2 - 1, torch.rand(1, 3, 64, 64, generator=gen) * 2 - 1


def embedding_tolerance(net: ArcFace) -> float:
    """Relative L2 difference two float32 runs of IR-SE50 may show: parity_tolerance over its widest reduction (the
    512 x 7 x 7 output layer) and its 101 weight layers (tests/tolerances.py). The pooling and crop in front of it
    average at most a few pixels, far below that."""
    return parity_tolerance(net)


def test_embeddings_match_styleclip_arcface_on_seeded_weights(seeded_ir_se50, styleclip_golden):
    faces256, faces64 = golden_faces()
    with torch.no_grad():
        for faces, key in ((faces256, "embeddings256"), (faces64, "embeddings64")):
            for ours, reference in zip(seeded_ir_se50.embed(faces).numpy(), styleclip_golden[key]):
                assert_embedding_close(ours, reference, embedding_tolerance(seeded_ir_se50))


def test_a_face_crop_one_row_off_fails_the_comparison(seeded_ir_se50, styleclip_golden, monkeypatch):
    """StyleCLIP crops rows 35:223; 36:224 is a mistake a port could make, and the bound must see it."""
    monkeypatch.setattr(identity, "_FACE_ROWS", slice(36, 224))
    with torch.no_grad():
        ours = seeded_ir_se50.embed(golden_faces()[0]).numpy()
    with pytest.raises(AssertionError, match="relative L2 error"):
        assert_embedding_close(ours[0], styleclip_golden["embeddings256"][0], embedding_tolerance(seeded_ir_se50))


@pytest.mark.parametrize("stride, size", [(1, 14), (2, 14), (2, 7)])
def test_subsampling_shortcut_is_treb1en_s_one_pixel_max_pool(stride, size):
    """The same-width shortcut takes every stride-th pixel: exactly MaxPool2d(1, stride), odd sizes included."""
    from sgsim.identity import Subsample

    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(stride + size))
    assert torch.equal(Subsample(stride)(x), F.max_pool2d(x, 1, stride))


def test_embed_pools_to_256_crops_the_face_and_pools_to_112(tiny_net):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    aligned = F.adaptive_avg_pool2d(images, 256)
    expected = tiny_net(F.adaptive_avg_pool2d(aligned[:, :, 35:223, 32:220], 112))
    assert torch.equal(tiny_net.embed(images), expected)  # the same operations in the same order: equal by construction


def test_identity_loss_is_zero_for_the_source_and_bounded(tiny_net):
    gen = torch.Generator().manual_seed(1)
    source = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    other = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    loss = IdentityLoss(tiny_net)
    # 1 - |e|^2 for a normalised 16-d e: the norm's sum (LAMBDA sqrt(16) u) and the division's rounding, twice.
    torch.testing.assert_close(loss(source, source), torch.zeros(2), atol=2 * (LAMBDA * 16**0.5 + 3) * U, rtol=0)
    values = loss(other, source)
    assert values.shape == (2,) and bool(((values > 0.05) & (values <= 2)).all())


def test_gradient_flows_to_the_edited_image_only(tiny_net):
    gen = torch.Generator().manual_seed(2)
    edited = (torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1).requires_grad_(True)
    source = (torch.rand(1, 3, 32, 32, generator=gen) * 2 - 1).requires_grad_(True)
    IdentityLoss(tiny_net)(edited, source).sum().backward()
    assert edited.grad is not None and float(edited.grad.abs().sum()) > 0
    assert source.grad is None


def test_load_identity_by_path_gives_the_loss(tmp_path):
    from sgsim.components import load_identity

    torch.save(ArcFace(IR_SE50).state_dict(), tmp_path / "model_ir_se50.pth")
    loaded = load_identity(tmp_path / "model_ir_se50.pth")
    loss = loaded.component
    assert isinstance(loss, IdentityLoss) and isinstance(loss.net, ArcFace)
    assert loaded.weights == tmp_path / "model_ir_se50.pth"
