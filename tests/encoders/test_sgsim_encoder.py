"""The SGSIM encoder reproduces the reference preprocessing and network (provenance: tests/data/encoders/sgsim_resnet18_reference.md)."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F

from encoders.errors import EncoderError
from encoders.sgsim_encoder import LogMelFrontEnd, SgsimEncoder
from sgsim.audio import load_audio, load_centred_window
from tolerances import LAMBDA, U, assert_embedding_close, dot_product_error, fft_error, parity_tolerance

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "encoders" / "sgsim_resnet18_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def seeded_encoder(reference, random_weights):
    encoder = SgsimEncoder("resnet18")
    encoder.load_official(random_weights(encoder.state_dict(), int(reference["seed"])), source="seeded")
    return encoder.eval()


def reference_waveform(shared_data: Path, name: str) -> np.ndarray:
    """The 44.1 kHz mono waveform the golden file was computed from."""
    if name == "raining+wind":
        parts = [load_audio(shared_data / "audio" / part, 44100)[0] for part in ("raining.wav", "wind.wav")]
        return np.concatenate(parts)
    return load_audio(shared_data / name, 44100)[0]


def log_mel_bound(front_end: LogMelFrontEnd, waveform: np.ndarray) -> torch.Tensor:
    """Per value of the log-mel [1, 128, F] (unit: the 80 dB range), how far two float32 front ends may differ
    (docs/tolerances.md#error-model).

    Each STFT coefficient of a frame errs by delta = fft_error(||frame||, n_fft); a mel band P = sum_k m_k |X_k|^2
    then by at most 2 (2 delta sqrt(M P) + M delta^2) for two implementations (Cauchy-Schwarz, M = sum_k m_k), plus
    the mel sum's own rounding and the basis' (4 u P). In dB that is 10 log10(1 + dP / P), once for the band and once
    for the peak it is referred to, plus the dB values' own rounding. A band under the 80 dB floor is clipped
    (1-Lipschitz), so its P counts as the floor's."""
    x = torch.from_numpy(np.asarray(waveform, np.float64))[None]
    spectrum = torch.stft(x, front_end.n_fft, front_end.hop_length, window=front_end.window.double(), center=True,
                          pad_mode="reflect", return_complex=True)
    padded = F.pad(x[None], (front_end.n_fft // 2, front_end.n_fft // 2), mode="reflect")[0]
    frames = padded.unfold(-1, front_end.n_fft, front_end.hop_length) * front_end.window.double()
    delta = fft_error(frames.norm(dim=-1), front_end.n_fft)[:, None, :]  # [1, 1, F]
    basis = front_end.mel_basis.double()
    power = basis @ spectrum.abs().square()  # [1, n_mels, F]
    floor = power.max() * 10 ** (-front_end.top_db / 10)
    mass = basis.sum(dim=1)[None, :, None]

    def relative_power_error(power: torch.Tensor, delta: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
        coefficient_error = 2 * (2 * delta * (mass * power).sqrt() + mass * delta**2)
        return (coefficient_error + 2 * dot_product_error(power, basis.shape[1]) + 4 * U * power) / power

    band = relative_power_error(power.clamp_min(floor), delta, mass)
    peak_index = np.unravel_index(int(power.argmax()), power.shape)
    peak = relative_power_error(power.max(), delta[0, 0, peak_index[2]], mass[0, peak_index[1], 0])
    decibels = 10 * (torch.log10(1 + band) + torch.log10(1 + peak)) + LAMBDA * U * front_end.top_db
    return (decibels / front_end.top_db).float()


def front_end_bound(front_end: LogMelFrontEnd, waveform: np.ndarray) -> torch.Tensor:
    """log_mel_bound carried to the network input [1, 1, 128, 512]: the crop and the bilinear resize take convex
    combinations of values, so the same combinations of the bounds bound their errors."""
    return front_end.to_image(front_end.fit_frames(log_mel_bound(front_end, waveform)))


def front_end_excess(front_end: LogMelFrontEnd, waveform: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference from the reference image as a multiple of its bound (<= 1 where they agree); the
    zero padding of a short clip is exact in both, and stays exact."""
    difference = (front_end(torch.from_numpy(waveform)[None])[0, 0] - torch.from_numpy(expected)).abs()
    bound = front_end_bound(front_end, waveform)[0, 0]
    return float(torch.where(difference == 0, 0.0, difference / bound).max())


def embedding_tolerance(encoder: SgsimEncoder, waveform: np.ndarray) -> float:
    """Relative L2 error of an embedding: the front end's (its bound over the input's norm, carried through a
    well-conditioned network at gain about 1) plus the ResNet's own parity_tolerance."""
    image = encoder.front_end(torch.from_numpy(waveform)[None])
    front_end = float(front_end_bound(encoder.front_end, waveform).norm() / image.norm())
    return front_end + parity_tolerance(encoder)


def assert_embedding_matches(ours: np.ndarray, expected: np.ndarray, tolerance: float, centre: np.ndarray) -> None:
    """Within `tolerance` in relative L2, and also after removing the clips' common direction: random weights map
    every clip near one direction (clips differ at cosine ~0.999), so what tells clips apart must match too."""
    assert_embedding_close(ours, expected, tolerance)
    assert_embedding_close(ours - centre, expected - centre, tolerance * np.linalg.norm(expected) / np.linalg.norm(expected - centre))


def test_mel_filterbank_is_librosas():
    expected = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=128, fmin=0.0, fmax=22050.0, htk=False, norm="slaney")
    # A triangle's weight is slope * (f - edge) in float32. The edges come from mels through exp (Slaney: above
    # 1 kHz, f = 1000 exp(m ln(6.4) / 27)), so an edge rounds by kappa u f, kappa = 1 + m_max ln(6.4) / 27 (the mel's
    # own u times d ln f / d ln m); the slope (height / edge spacing) turns the two edges' error into the weight's.
    edges = librosa.mel_frequencies(128 + 2, fmin=0.0, fmax=22050.0, htk=False)
    kappa = 1 + librosa.hz_to_mel(22050.0) * np.log(6.4) / 27
    height = 2 / (edges[2:] - edges[:-2])
    slope = height / np.minimum(np.diff(edges)[:-1], np.diff(edges)[1:])
    allowed = LAMBDA * U * (2 * kappa * slope * edges[2:] + height)
    assert (np.abs(LogMelFrontEnd().mel_basis.numpy() - expected) <= allowed[:, None]).all()


def test_log_mel_matches_librosa_with_reflect_padding(shared_data):
    waveform, _ = load_audio(shared_data / "audio" / "explosion.wav", 44100)
    ours = LogMelFrontEnd().log_mel(torch.from_numpy(waveform)[None])[0].numpy()
    power = librosa.feature.melspectrogram(y=waveform, sr=44100, n_mels=128, pad_mode="reflect")
    expected = librosa.power_to_db(power, ref=np.max) / 80.0 + 1.0
    assert ours.shape == expected.shape == (128, 1 + len(waveform) // 512)
    difference = np.abs(ours - expected)
    excess = np.where(difference == 0, 0.0, difference / log_mel_bound(LogMelFrontEnd(), waveform)[0].numpy())
    assert excess.max() <= 1, f"{excess.max():.3g} times the rounding bound"
    assert ours.min() >= 0.0 and ours.max() == pytest.approx(1.0)


def test_front_end_matches_reference_network_input(shared_data, reference):
    waveform, _ = load_audio(shared_data / "audio" / "drill.wav", 44100)
    front_end = LogMelFrontEnd()
    assert front_end(torch.from_numpy(waveform)[None]).shape == (1, 1, 128, 512)
    excess = front_end_excess(front_end, waveform, reference["drill_image"])
    assert excess <= 1, f"front end differs from the reference by {excess:.3g} times the bound"


def test_a_symmetric_window_fails_the_front_end_comparison(shared_data, reference):
    """A symmetric Hann window where librosa uses a periodic one: a mistake a port could make, which the bound must see."""
    waveform, _ = load_audio(shared_data / "audio" / "drill.wav", 44100)
    front_end = LogMelFrontEnd()
    front_end.window = torch.hann_window(front_end.n_fft, periodic=False)
    assert front_end_excess(front_end, waveform, reference["drill_image"]) > 1


def test_embeddings_match_reference_implementation(shared_data, reference, seeded_encoder):
    centre = reference["embeddings"].mean(axis=0)
    for name, expected in zip(reference["names"], reference["embeddings"]):
        waveform = reference_waveform(shared_data, str(name))
        with torch.no_grad():
            ours = seeded_encoder(torch.from_numpy(waveform)[None])[0].numpy()
            tolerance = embedding_tolerance(seeded_encoder, waveform)
        assert_embedding_matches(ours, expected, tolerance, centre)


def test_short_clips_are_padded_after_the_db_step_and_long_clips_centre_cropped():
    front_end = LogMelFrontEnd()
    columns = torch.arange(1000.0).expand(1, 128, 1000)
    np.testing.assert_array_equal(front_end.fit_frames(columns)[0, 0].numpy(), np.arange(68.0, 932.0))
    short = front_end.fit_frames(torch.full((1, 128, 100), 0.5))
    assert short.shape == (1, 128, 864)
    assert (short[..., :100] == 0.5).all() and (short[..., 100:] == 0).all()


def test_resize_is_half_pixel_bilinear_without_antialias_then_reshape():
    front_end = LogMelFrontEnd()
    ramp = torch.arange(864.0).expand(1, 128, 864)  # value = column index
    image = front_end.to_image(ramp)
    # OpenCV INTER_LINEAR: output column c samples input column (c + 0.5) * 864 / 128 - 0.5, with no averaging.
    expected_row = (np.arange(128) + 0.5) * (864 / 128) - 0.5
    assert image.shape == (1, 1, 128, 512)
    # float32 source coordinates and weights: 16 u of the ramp's largest value (864) is 8e-4.
    np.testing.assert_allclose(image.reshape(512, 128).numpy(), np.tile(expected_row, (512, 1)), rtol=0, atol=16 * U * 864)


def test_silent_and_tiny_clips_give_finite_embeddings(seeded_encoder):
    with torch.no_grad():
        log_mel = seeded_encoder.front_end.log_mel(torch.zeros(1, 44100))
        embedding = seeded_encoder.encode(torch.zeros(1, 44100), 44100)
        quiet = seeded_encoder.encode(torch.full((1, 44100), 1e-30), 44100)
    assert torch.isfinite(log_mel).all() and (log_mel == 1.0).all()  # ref=max of an all-zero clip is amin: 0 dB
    assert torch.isfinite(embedding).all() and torch.isfinite(quiet).all()
    assert embedding.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_too_short_clip_is_an_error(seeded_encoder):
    with pytest.raises(EncoderError, match="1024 samples is too short"):
        seeded_encoder.encode(torch.ones(1, 1024), 44100)


def test_a_batch_embeds_each_clip_as_alone(seeded_encoder):
    clips = torch.randn(2, 44100, generator=torch.Generator().manual_seed(0))
    clips[1] *= 0.01  # a quieter clip: the dB reference is each clip's own maximum
    with torch.no_grad():
        together = seeded_encoder(clips)
        alone = torch.cat([seeded_encoder(clips[i : i + 1]) for i in range(2)])
    for one_of_batch, one_alone in zip(together, alone):  # a batch may take other kernels: other summation orders
        assert_embedding_close(one_of_batch.numpy(), one_alone.numpy(), parity_tolerance(seeded_encoder))


def test_the_network_sees_exactly_864_frames_of_a_longer_clip():
    window = round(LogMelFrontEnd().window_seconds * 44100)
    assert window == 864 * 512


@pytest.mark.parametrize("name", ["audio/thunderstorm.wav", "raining+wind"])  # 9.3 s and 20 s
def test_files_embed_as_the_reference_embeds_the_whole_clip(shared_data, reference, seeded_encoder, twenty_second_file, embed_file, name):
    """The dB reference is the whole clip's maximum, then the centred 864 frames are cropped (reference order)."""
    path = twenty_second_file(44100, True) if name == "raining+wind" else shared_data / name
    expected = reference["embeddings"][list(reference["names"]).index(name)]
    embedding = embed_file(seeded_encoder, path)
    with torch.no_grad():
        tolerance = embedding_tolerance(seeded_encoder, load_audio(path, 44100)[0])
    assert_embedding_matches(embedding, expected, tolerance, reference["embeddings"].mean(axis=0))


def test_cropping_before_the_db_step_would_not_match_the_reference(twenty_second_file):
    """Why whole clips are decoded: the centred 10 s alone have another maximum, so other dB values. The network
    input shows it far beyond its rounding bound; the seeded ResNet's embedding barely does (0.75 times its bound:
    random weights map every clip near one direction), so the check is made where the error model is tight."""
    waveform, _ = load_audio(twenty_second_file(44100, True), 44100)
    front_end = LogMelFrontEnd()
    start = (len(waveform) - 864 * 512) // 2
    whole_clip_input = front_end(torch.from_numpy(waveform)[None])[0, 0].numpy()
    assert front_end_excess(front_end, waveform[start : start + 864 * 512], whole_clip_input) > 1


def test_a_file_longer_than_the_cap_is_cut_to_its_centre_with_a_warning(tmp_path, seeded_encoder):
    """Past input_seconds the centred stretch is decoded (and said so); the encoder embeds all of that stretch."""
    rng = np.random.default_rng(1)
    seconds = seeded_encoder.input_seconds + 4
    waveform = (0.1 * rng.standard_normal(int(seconds * 44100)) * np.linspace(0.1, 1.0, int(seconds * 44100))).astype(np.float32)
    path = tmp_path / "long.wav"
    soundfile.write(path, waveform, 44100, subtype="FLOAT")
    with pytest.warns(UserWarning, match=f"long.wav lasts {seconds:.1f} s; only its centred 60 s are used"):
        decoded = load_centred_window(path, 44100, True, seeded_encoder.input_seconds)
    start = 2 * 44100
    np.testing.assert_array_equal(decoded, waveform[start : start + 60 * 44100])
    with torch.no_grad():
        from_file = seeded_encoder.encode(torch.from_numpy(decoded)[None], 44100)[0]
        expected = seeded_encoder.encode(torch.from_numpy(waveform[start : start + 60 * 44100])[None], 44100)[0]
    assert torch.equal(from_file, expected)  # the same samples (checked above) through the same code: equal by construction


def test_state_dict_layout_of_both_backbones():
    small, large = SgsimEncoder("resnet18").state_dict(), SgsimEncoder("resnet50").state_dict()
    for state in (small, large):
        assert {key.split(".")[0] for key in state} == {"conv", "feature_extractor"}
        assert state["conv.weight"].shape == (3, 1, 3, 3) and state["conv.bias"].shape == (3,)
    assert small["feature_extractor.fc.weight"].shape == (512, 512)
    assert large["feature_extractor.fc.weight"].shape == (512, 2048)
    timm = pytest.importorskip("timm")  # the reference builds its backbone with timm.create_model
    for name, state in (("resnet18", small), ("resnet50", large)):
        expected = timm.create_model(name, num_classes=512, pretrained=False).state_dict()
        ours = {key.removeprefix("feature_extractor."): value.shape for key, value in state.items() if key.startswith("f")}
        assert ours == {key: value.shape for key, value in expected.items()}


def test_unknown_backbone_is_an_error():
    with pytest.raises(EncoderError, match="unknown backbone 'resnet34'"):
        SgsimEncoder("resnet34")
