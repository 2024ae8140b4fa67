"""Wav2CLIP: parity with the authors' code on real clips, its front end, batch vs single-clip statistics,
strict loading.

The golden numbers come from descriptinc/lyrebird-wav2clip run with seeded weights (tests/data/encoders/README.md).
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from tolerances import LAMBDA, U, assert_embedding_close, fft_error, network_error, relative_l2

from encoders import wav2clip
from encoders.errors import EncoderError
from encoders.registry import build_audio_encoder
from encoders.wav2clip import Wav2ClipEncoder

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "encoders" / "wav2clip_reference.npz"
WHOLE_CLIPS = GOLDEN.with_name("wav2clip_whole_clips.npz")  # the authors' code on whole 9.3 s and 20 s clips
# A subset keeps the suite fast (every clip in the golden file was checked when it was made); the batch test
# below covers the three ESC-50 clips one by one as well.
PARITY_CLIPS = ("audio/drill.wav", "audio/sobbing.wav", "audio/thunderstorm.wav")  # 48 kHz stereo, 48 kHz, 44.1 kHz
# ResNet18 + projection head: its widest reduction sums 512 * 3 * 3 terms over 17 convolutions and 3 linear layers
# (tolerances.network_error); the front end's log(power + 1e-7) caps what a quiet bin's rounding can add.
EMBEDDING_TOLERANCE = network_error(512 * 9, 20)


def load_clip(shared_data: Path, name: str, duration: float | None = None) -> torch.Tensor:
    """[T] at 16 kHz mono, decoded as the golden run decoded it (librosa.load)."""
    folder = shared_data / ("audio" if name.startswith("audio/") else "esc50-mini/audio")
    waveform, _ = librosa.load(folder / name.split("/")[1], sr=16000, mono=True, duration=duration)
    return torch.from_numpy(waveform)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return dict(data)


@pytest.fixture(scope="module")
def encoder(golden, random_weights) -> Wav2ClipEncoder:
    model = Wav2ClipEncoder()
    weights = random_weights(model.state_dict(), int(golden["seed"]))
    weights["audio_encoder.spectrogram.window"] = torch.hann_window(512)  # the real window, as in the golden run
    model.load_official(weights, "seeded Wav2CLIP weights")
    return model


@torch.no_grad()
def standardised_log_error(encoder: Wav2ClipEncoder, waveform: torch.Tensor) -> np.ndarray:
    """Per element of the network input [257, frames]: how far one float32 implementation may be off.

    A bin's amplitude errs by tolerances.fft_error (512 points); log(P + 1e-7) turns that into at most
    dP / (P + 1e-7 - dP), so no bin, however quiet, moves its log by more than ~2 dX / sqrt(1e-7); the log's own
    rounding adds 4 u |log|; mean and std (cascade sums of N terms) add LAMBDA u log2(N) relative; all / std."""
    spectrogram = encoder.audio_encoder.spectrogram
    padded = torch.nn.functional.pad(waveform[None, None], (wav2clip.N_FFT // 2,) * 2, mode="reflect")[0, 0]
    frames = padded.unfold(-1, wav2clip.N_FFT, wav2clip.HOP_LENGTH) * spectrogram.window
    amplitude_error = fft_error(frames.double().norm(dim=-1), wav2clip.N_FFT).numpy()[None]
    power = spectrogram(waveform[None])[0].double().numpy()
    power_error = 2 * np.sqrt(power) * amplitude_error + amplitude_error**2
    shifted = power + wav2clip.LOG_OFFSET
    log = np.log(shifted)
    log_error = power_error / (shifted - np.minimum(power_error, shifted / 2)) + 4 * U * np.abs(log)
    statistics_error = LAMBDA * U * np.log2(log.size) * np.abs(log - log.mean()).max()
    return (log_error + statistics_error) / log.std(ddof=1)


@torch.no_grad()
def test_front_end_matches_reference_spectrogram(encoder, golden, shared_data):
    waveform = load_clip(shared_data, "audio/raining.wav", 2.0)
    spectrogram = encoder.audio_encoder.log_spectrogram(waveform[None])[0, 0].numpy()
    assert spectrogram.shape == golden["spectrogram"].shape == (257, 1 + 32000 // 353)
    allowed = 2 * standardised_log_error(encoder, waveform)  # two implementations
    excess = np.abs(spectrogram - golden["spectrogram"]) / allowed
    assert excess.max() <= 1, f"{excess.max():.3g} times the bound (allowed {allowed.min():.2g} to {allowed.max():.2g})"
    assert abs(spectrogram.mean()) < allowed.max() and abs(spectrogram.std(ddof=1) - 1) < allowed.max()


@pytest.mark.parametrize("mistake", [
    ("_buffers", "window", torch.hann_window(wav2clip.N_FFT, periodic=False)),  # symmetric Hann, not periodic
    ("__dict__", "pad_mode", "constant"),  # zero padding where the reference reflects
], ids=["symmetric-window", "zero-padding"])
@torch.no_grad()
def test_a_wrong_front_end_fails_the_comparison(encoder, golden, shared_data, monkeypatch, mistake):
    waveform = load_clip(shared_data, "audio/raining.wav", 2.0)
    allowed = 2 * standardised_log_error(encoder, waveform)
    where, name, value = mistake
    monkeypatch.setitem(getattr(encoder.audio_encoder.spectrogram, where), name, value)
    spectrogram = encoder.audio_encoder.log_spectrogram(waveform[None])[0, 0].numpy()
    assert (np.abs(spectrogram - golden["spectrogram"]) / allowed).max() > 1


@torch.no_grad()
def test_a_wrong_log_offset_fails_the_comparison(encoder, golden, shared_data, monkeypatch):
    """log(power + 1e-6) where the reference adds 1e-7: every quiet bin moves."""
    waveform = load_clip(shared_data, "audio/raining.wav", 2.0)
    allowed = 2 * standardised_log_error(encoder, waveform)
    monkeypatch.setattr(wav2clip, "LOG_OFFSET", 1e-6)
    spectrogram = encoder.audio_encoder.log_spectrogram(waveform[None])[0, 0].numpy()
    assert (np.abs(spectrogram - golden["spectrogram"]) / allowed).max() > 1


@pytest.mark.parametrize("clip", PARITY_CLIPS)
@torch.no_grad()
def test_embedding_matches_reference(encoder, golden, shared_data, clip, assert_matches_golden):
    reference = golden["embeddings"][list(golden["names"]).index(clip)]
    embedding = encoder(load_clip(shared_data, clip)[None])[0].numpy()
    assert_matches_golden(embedding, reference, EMBEDDING_TOLERANCE)


def test_golden_embeddings_tell_clips_apart(golden, assert_goldens_tell_clips_apart):
    assert_goldens_tell_clips_apart(golden["embeddings"], EMBEDDING_TOLERANCE)


@torch.no_grad()
def test_clips_are_standardised_alone_unless_batch_statistics_is_asked_for(encoder, golden, shared_data):
    batch = torch.stack([load_clip(shared_data, name) for name in golden["batch_names"]])
    alone = [golden["embeddings"][list(golden["names"]).index(name)] for name in golden["batch_names"]]
    for embedding, reference in zip(encoder(batch).numpy(), alone):
        assert_embedding_close(embedding, reference, EMBEDDING_TOLERANCE)
    assert min(relative_l2(together, one) for together, one in zip(golden["batch_embeddings"], alone)) > 10 * EMBEDDING_TOLERANCE
    encoder.batch_statistics = True
    try:
        for embedding, reference in zip(encoder(batch).numpy(), golden["batch_embeddings"]):
            assert_embedding_close(embedding, reference, EMBEDDING_TOLERANCE)
    finally:
        encoder.batch_statistics = False


def test_encoder_declares_its_clip_space():
    encoder = build_audio_encoder("wav2clip")
    assert (encoder.sample_rate, encoder.embed_dim, encoder.mono) == (16000, 512, True)
    assert (encoder.clip_model, encoder.clip_weights) == ("ViT-B-32-quickgelu", "clip-vit-b-32")
    assert Wav2ClipEncoder(batch_statistics=True).batch_statistics


def test_other_tensors_in_the_file_are_left_out(encoder):
    weights = {key: value.clone() for key, value in encoder.state_dict().items()}
    weights["image_transform.sequential.0.weight"] = torch.zeros(512, 512)
    assert set(encoder.convert_official(weights)) == set(encoder.state_dict())
    encoder.load_official(weights, "Wav2CLIP.pt")


def test_a_file_without_the_audio_transform_is_refused(encoder):
    weights = {key: value for key, value in encoder.state_dict().items() if not key.startswith("audio_transform.")}
    with pytest.raises(EncoderError, match=r"Wav2CLIP\.pt .* 4 keys missing \(audio_transform\.sequential\.0\.bias"):
        encoder.load_official(weights, "Wav2CLIP.pt")


def test_an_sgsim_checkpoint_is_refused(encoder):
    sgsim_keys = {"conv.weight": torch.zeros(3, 1, 3, 3), "feature_extractor.fc.weight": torch.zeros(512, 512)}
    with pytest.raises(EncoderError, match=r"resnet18_57\.pth .* 0 unexpected"):
        encoder.load_official(sgsim_keys, "resnet18_57.pth")


@pytest.mark.parametrize("name", ["audio/thunderstorm.wav", "raining+wind"])  # 9.3 s mono and 20 s
def test_files_embed_whole_as_the_authors_embed_them(encoder, shared_data, twenty_second_file, embed_file, assert_matches_golden, name):
    with np.load(WHOLE_CLIPS) as whole:
        assert int(whole["seed"]) == int(np.load(GOLDEN)["seed"])
        reference = whole["embeddings"][list(whole["names"]).index(name)]
    path = twenty_second_file(16000, True) if name == "raining+wind" else shared_data / name
    assert_matches_golden(embed_file(encoder, path), reference, EMBEDDING_TOLERANCE)
