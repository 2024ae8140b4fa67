"""AudioCLIP's audio head: parity with the authors' code on real clips, its front end, stereo summing, strict loading.

The golden numbers come from AndreyGuzhov/AudioCLIP run with seeded weights (tests/data/encoders/README.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import torch
from tolerances import assert_db_close, assert_embedding_close, dot_product_error, network_error, perturbed_db, relative_l2

from encoders import audioclip
from encoders.audioclip import (
    AudioClipEncoder,
    LinearFBSP,
    blackman_harris,
    frame_signal,
    int16_to_unit_range,
)
from encoders.errors import EncoderError
from encoders.registry import build_audio_encoder
from sgsim.audio import load_centred_window

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "encoders" / "audioclip_reference.npz"
WHOLE_CLIPS = GOLDEN.with_name("audioclip_whole_clips.npz")  # the authors' code on whole 9.3 s and 20 s clips
# A subset keeps the suite fast (ResNeXt-50 on the CPU); every clip in the golden file was checked when it was made.
PARITY_CLIPS = ("audio/drill.wav", "audio/giggling.wav", "esc50/1-22694-A-20.wav")  # stereo 48 kHz, stereo, mono
# ResNeXt-50's own rounding: its widest reduction sums 2048 terms (1x1 convolutions, fc) over 50 convolutions and
# 6 gate/projection layers (tolerances.network_error). The front end's share is measured per clip, below.
NETWORK_ERROR = network_error(2048, 56)


def load_clip(shared_data: Path, name: str, duration: float) -> torch.Tensor:
    """[C, T] at 44.1 kHz, channels kept, decoded as the golden run decoded it (librosa.load)."""
    folder = shared_data / ("audio" if name.startswith("audio/") else "esc50-mini/audio")
    waveform, _ = librosa.load(folder / name.split("/")[1], sr=44100, mono=False, duration=duration)
    return torch.from_numpy(np.atleast_2d(waveform))


def released_layout(encoder: AudioClipEncoder) -> dict[str, torch.Tensor]:
    """The encoder's own weights under the released file's audio keys, its empty `audio.fbsp.bias` included."""
    return dict(encoder.state_dict(), **{"audio.fbsp.bias": torch.zeros(0)})


def official_weights(encoder: AudioClipEncoder, random_weights, seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights under the released file's audio keys, with the special values the golden run used."""
    weights = random_weights(released_layout(encoder), seed)
    weights["audio.window"] = blackman_harris(1654)
    weights["audio.fbsp.m"] = 1.0 + weights["audio.fbsp.m"]  # m > 0: sinc^m of a negative sinc is complex
    weights["audio.fbsp.fb"] = 1.0 + 5.0 * weights["audio.fbsp.fb"].abs()
    weights["audio.fbsp.fc"] = torch.arange(1025, dtype=torch.float32) + weights["audio.fbsp.fc"]
    return weights


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return dict(data)


@pytest.fixture(scope="module")
def encoder(golden, random_weights) -> AudioClipEncoder:
    model = AudioClipEncoder()
    model.load_official(official_weights(model, random_weights, int(golden["seed"])), "seeded AudioCLIP weights")
    return model


def test_int16_mapping_is_audioclips_affine_map():
    samples = torch.tensor([-32768.0, 32767.0, 0.0])
    expected = torch.tensor([-1.0, 1.0, 1.0 / 65535.0])
    # The shift and the doubling are exact for int16 values and the final subtraction is exact (Sterbenz): only the
    # division rounds, by half an ulp of a value below 2, 6e-8.
    torch.testing.assert_close(int16_to_unit_range(samples), expected, rtol=0, atol=1e-7)


def test_window_is_scipys_periodic_blackman_harris():
    expected = torch.from_numpy(scipy.signal.get_window("blackmanharris", 1654, fftbins=True)).float()
    # Both round a float64 window (equal to a few u64) to float32: at most one ulp apart, 6e-8 for values below 1.
    torch.testing.assert_close(blackman_harris(1654), expected, rtol=0, atol=1e-7)


def test_frames_of_a_5s_clip_are_centred_with_zero_padding():
    signal = torch.arange(1, 220501, dtype=torch.float32)[None]
    frames = frame_signal(signal, 1654, 561)
    assert frames.shape == (1, 392, 1654)  # 1 + ceil((220500 - 1654) / 561)
    padding = 391 * 561 + 1654 - 220500  # 505 zeros: 252 before, 253 after
    assert torch.all(frames[0, 0, : padding // 2] == 0) and frames[0, 0, padding // 2] == 1
    assert frames[0, -1, -(padding - padding // 2) - 1] == 220500 and torch.all(frames[0, -1, -253:] == 0)


def test_fbsp_at_initialisation_is_a_normalised_dft():
    frames = torch.randn(4, 2048, generator=torch.Generator().manual_seed(0))
    t = np.pi * np.linspace(-1.0, 1.0, 2048)
    basis = np.exp(-1j * np.arange(1025)[:, None] * t[None]) / np.sqrt(2048)
    expected = np.abs(frames.double().numpy() @ basis.T) ** 2
    np.testing.assert_allclose(LinearFBSP(1025)(frames).detach().numpy(), expected, rtol=1e-3, atol=1e-3)


@torch.no_grad()
def filterbank_error(encoder: AudioClipEncoder, waveform: torch.Tensor) -> torch.Tensor:
    """Per dB bin [B, C, 3, 341, frames]: the rounding bound of its filter's complex amplitude, a dot product of 2048
    terms (tolerances.dot_product_error over sum |windowed sample| |filter weight|). The filters' own sin, cos and
    pow differ between kernel paths by an ulp per weight, an error u * sum|x w| that this bound already covers."""
    batch, channels, _ = waveform.shape
    signal = int16_to_unit_range(waveform.reshape(batch * channels, -1) * audioclip.INT16_SCALE)
    frames = frame_signal(signal, audioclip.FRAME_LENGTH, audioclip.HOP_LENGTH) * encoder.audio.window
    padding = audioclip.N_FFT - audioclip.FRAME_LENGTH
    frames = torch.nn.functional.pad(frames, (padding // 2, padding - padding // 2))
    real, imag = encoder.audio.fbsp.filters(audioclip.N_FFT)
    abs_sums = frames.abs() @ torch.sqrt(real.square() + imag.square()).T
    bins = audioclip.N_BANDS * audioclip.BAND_HEIGHT
    return dot_product_error(abs_sums.transpose(-1, -2)[:, :bins], audioclip.N_FFT).reshape(
        batch, channels, audioclip.N_BANDS, audioclip.BAND_HEIGHT, -1)


@pytest.fixture(scope="module")
def raining_quarter_second(shared_data) -> torch.Tensor:
    """The front-end golden's input: the first 0.25 s of raining.wav, both channels, [1, 2, T]."""
    return load_clip(shared_data, "audio/raining.wav", 0.25)[None]


@torch.no_grad()
def test_front_end_matches_reference_spectrogram(encoder, golden, raining_quarter_second):
    reference = golden["spectrogram"]
    bands = encoder.audio.spectrogram(raining_quarter_second)[0].numpy()
    assert bands.shape == reference.shape == (2, 3, 341, 18)
    assert_db_close(bands, reference, filterbank_error(encoder, raining_quarter_second)[0].numpy())


def symmetric_window(encoder, monkeypatch) -> None:
    """scipy's symmetric Blackman-Harris (fftbins=False) where AudioCLIP uses the periodic one."""
    window = scipy.signal.get_window("blackmanharris", audioclip.FRAME_LENGTH, fftbins=False)
    monkeypatch.setitem(encoder.audio._buffers, "window", torch.from_numpy(window).float())


def frames_one_sample_late(encoder, monkeypatch) -> None:
    """The padding of the last frame split one sample differently: every frame starts one sample late."""
    monkeypatch.setattr(audioclip, "frame_signal", lambda signal, length, hop: frame_signal(
        torch.nn.functional.pad(signal, (1, 0))[..., :-1], length, hop))


def centre_frequencies_off_by_a_hundredth_of_a_bin(encoder, monkeypatch) -> None:
    """A filter-centre weight perturbed as a slip in a conversion would perturb it (fc + 0.01)."""
    monkeypatch.setitem(encoder.audio.fbsp._parameters, "fc", torch.nn.Parameter(encoder.audio.fbsp.fc + 0.01))


def bandwidths_off_by_a_thousandth(encoder, monkeypatch) -> None:
    """A bandwidth weight 0.1 % off (fb * 1.001)."""
    monkeypatch.setitem(encoder.audio.fbsp._parameters, "fb", torch.nn.Parameter(encoder.audio.fbsp.fb * 1.001))


@pytest.mark.parametrize("mistake", [symmetric_window, frames_one_sample_late, centre_frequencies_off_by_a_hundredth_of_a_bin,
                                     bandwidths_off_by_a_thousandth])
@torch.no_grad()
def test_a_wrong_front_end_fails_the_comparison(encoder, golden, raining_quarter_second, monkeypatch, mistake):
    """The rounding bound stays tight where it matters: bug-sized mistakes fail it."""
    amplitude_error = filterbank_error(encoder, raining_quarter_second)[0].numpy()
    mistake(encoder, monkeypatch)
    bands = encoder.audio.spectrogram(raining_quarter_second)[0].numpy()
    with pytest.raises(AssertionError, match="times the bound"):
        assert_db_close(bands, golden["spectrogram"], amplitude_error)


@torch.no_grad()
def embedding_with_tolerance(encoder: AudioClipEncoder, waveform: torch.Tensor) -> tuple[np.ndarray, float]:
    """[1, C, T] -> the clip's embedding and the relative L2 error allowed for it: the network's own rounding plus
    its response to a front end computed on another CPU (every dB bin moved within filterbank_error). Bins under
    their rounding floor (digital silence, quiet high bands) may take any value down to -180 dB there, and the
    network sees those values: giggling.wav, 16 % digital silence, is only defined to ~10 % by float32."""
    bands = encoder.audio.spectrogram(waveform)
    moved = perturbed_db(bands, filterbank_error(encoder, waveform), seed=0)

    def embed(dbs: torch.Tensor) -> np.ndarray:
        features = encoder.audio.pooled_features(dbs.flatten(0, 1)).reshape(dbs.shape[0], dbs.shape[1], -1)
        return encoder.audio.fc(features.sum(dim=1))[0].numpy()

    embedding = embed(bands)
    return embedding, NETWORK_ERROR + relative_l2(embed(moved), embedding)


@pytest.mark.parametrize("clip", PARITY_CLIPS)
@torch.no_grad()
def test_embedding_matches_reference(encoder, golden, shared_data, clip):
    reference = golden["embeddings"][list(golden["names"]).index(clip)]
    embedding, tolerance = embedding_with_tolerance(encoder, load_clip(shared_data, clip, 5.0)[None])
    assert_embedding_close(embedding, reference, tolerance)
    others = np.delete(golden["embeddings"], list(golden["names"]).index(clip), axis=0)
    assert min(relative_l2(other, reference) for other in others) > 1.5 * tolerance  # the tolerance tells clips apart


def test_summing_channels_is_checked_by_the_embedding_comparison(encoder, golden, shared_data):
    """A wrong network fails the comparison: channels averaged instead of summed (drill.wav is stereo)."""
    reference = golden["embeddings"][list(golden["names"]).index("audio/drill.wav")]
    waveform = load_clip(shared_data, "audio/drill.wav", 5.0)[None]
    _, tolerance = embedding_with_tolerance(encoder, waveform)
    with torch.no_grad():
        features = encoder.audio.pooled_features(encoder.audio.spectrogram(waveform).flatten(0, 1))
        averaged = encoder.audio.fc(features.mean(dim=0, keepdim=True))[0].numpy()
    with pytest.raises(AssertionError, match="relative L2 error"):
        assert_embedding_close(averaged, reference, tolerance)


@torch.no_grad()
def test_stereo_features_are_summed_over_channels(encoder, shared_data):
    stereo = load_clip(shared_data, "audio/raining.wav", 0.25)
    assert stereo.shape[0] == 2
    bands = [encoder.audio.spectrogram(channel[None, None])[:, 0] for channel in stereo]
    per_channel = [encoder.audio.pooled_features(channel_bands) for channel_bands in bands]
    expected = encoder.audio.fc(per_channel[0] + per_channel[1])
    torch.testing.assert_close(encoder(stereo[None]), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(encoder(stereo.flip(0)[None]), expected, rtol=1e-4, atol=1e-4)
    mono = encoder.encode(stereo[:1], 44100)
    torch.testing.assert_close(mono, torch.nn.functional.normalize(encoder(stereo[None, :1]), dim=-1))


def test_variants_name_their_clip_towers():
    assert build_audio_encoder("audioclip-partial").clip_weights == "audioclip-partial"
    full = build_audio_encoder("audioclip-full")
    assert (full.clip_weights, full.clip_model) == ("audioclip-full", "RN50-quickgelu")
    assert (full.sample_rate, full.embed_dim, full.mono) == (44100, 1024, False)
    with pytest.raises(EncoderError, match="variant 'half'"):
        AudioClipEncoder("half")


def test_a_file_without_the_audio_head_is_refused(encoder):
    clip_only = {
        "visual.conv1.weight": torch.zeros(32, 3, 3, 3), "logit_scale": torch.zeros(()), "logit_scale_at": torch.ones(()),
    }
    with pytest.raises(EncoderError, match=r"clip\.pt .* 369 keys missing"):
        encoder.load_official(clip_only, "clip.pt")


def test_wrong_shapes_and_a_real_fbsp_bias_are_refused(encoder):
    weights = dict(released_layout(encoder), **{"audio.fc.weight": torch.zeros(512, 2048)})
    with pytest.raises(EncoderError, match=r"1 of the wrong shape \(audio\.fc\.weight\)"):
        encoder.load_official(weights, "other.pt")
    weights = dict(released_layout(encoder), **{"audio.fbsp.bias": torch.zeros(1025, 2)})
    with pytest.raises(EncoderError, match=r"1 unexpected \(audio\.fbsp\.bias\)"):
        encoder.load_official(weights, "other.pt")


def test_clip_towers_and_logit_scales_in_the_file_are_left_out(encoder):
    weights = {key: value.clone() for key, value in released_layout(encoder).items()}
    weights.update({"visual.conv1.weight": torch.zeros(32, 3, 3, 3), "logit_scale_at": torch.tensor(math.log(100))})
    assert set(encoder.convert_official(weights)) == set(encoder.state_dict())
    encoder.load_official(weights, "AudioCLIP-Partial-Training.pt")


@pytest.mark.parametrize("name", ["audio/thunderstorm.wav", "raining+wind"])  # 9.3 s mono and 20 s
@torch.no_grad()
def test_files_embed_whole_as_the_authors_embed_them(encoder, shared_data, twenty_second_file, name):
    """Read through sgsim.audio.load_centred_window, the path every sgsim caller reads a file by."""
    with np.load(WHOLE_CLIPS) as whole:
        assert int(whole["seed"]) == int(np.load(GOLDEN)["seed"])
        reference = whole["embeddings"][list(whole["names"]).index(name)]
    path = twenty_second_file(44100, False) if name == "raining+wind" else shared_data / name
    waveform = load_centred_window(path, encoder.sample_rate, encoder.mono, encoder.input_seconds)
    embedding, tolerance = embedding_with_tolerance(encoder, torch.from_numpy(waveform)[None])
    assert_embedding_close(embedding, reference, tolerance)
