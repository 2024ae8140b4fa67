"""sgsim.audio: the one audio loader reads what users have, as librosa.load would, and rejects what it cannot use."""

from __future__ import annotations

import math
import os
import re

import librosa
import numpy as np
import pytest
import soundfile
import torch

from sgsim.audio import audio_duration, check_long_enough, check_not_silent, is_silent, load_audio, load_centred_window, rms_dbfs
from sgsim.errors import AudioError


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def dominant_frequency(waveform: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.argmax(spectrum) * rate / len(waveform))


# Real files: the demo sounds are 48 kHz 24-bit stereo (drill), 48 kHz mono (sobbing), 44.1 kHz stereo (raining).
@pytest.mark.parametrize("name", ["drill.wav", "sobbing.wav", "raining.wav"])
@pytest.mark.parametrize("mono", [True, False])
def test_real_files_match_librosa_load(shared_data, name, mono):
    path = shared_data / "audio" / name
    ours, rate = load_audio(path, sample_rate=44100, mono=mono)
    expected, _ = librosa.load(path, sr=44100, mono=mono)
    if not mono:
        expected = np.atleast_2d(expected)  # ours is always [C, T] when mono=False, also for a one-channel file
    assert rate == 44100 and ours.dtype == np.float32
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


def test_stereo_keeps_channels_and_mono_averages_them(tmp_path):
    left, right = sine(440, 1.0, 16000), sine(1000, 1.0, 16000, 0.25)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    stereo, rate = load_audio(path, mono=False)
    mono, _ = load_audio(path)
    assert rate == 16000 and stereo.shape == (2, 16000) and mono.shape == (16000,)
    np.testing.assert_array_equal(stereo[0], left)
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)


def test_24_bit_pcm_is_read_at_full_precision(tmp_path):
    codes = np.array([-(2**23), -1, 0, 1, 12345, 2**23 - 1], dtype=np.int32)
    path = tmp_path / "pcm24.wav"
    soundfile.write(path, (codes * 256)[:, None], 48000, subtype="PCM_24")  # int32 input: 24-bit codes in the top bytes
    waveform, rate = load_audio(path)
    assert rate == 48000
    np.testing.assert_array_equal(waveform, (codes / 2.0**23).astype(np.float32))


def test_48_khz_is_resampled_to_the_asked_rate_keeping_pitch(tmp_path):
    path = tmp_path / "tone48k.wav"
    soundfile.write(path, sine(1000, 2.0, 48000), 48000)
    waveform, rate = load_audio(path, sample_rate=44100)
    assert rate == 44100 and waveform.shape == (88200,)
    assert dominant_frequency(waveform, 44100) == pytest.approx(1000, abs=1)
    assert np.abs(waveform[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("fmt", ["flac", "ogg"])
def test_compressed_formats_round_trip(tmp_path, fmt):
    tone = sine(440, 1.0, 22050)
    path = tmp_path / f"tone.{fmt}"
    soundfile.write(path, tone, 22050)
    waveform, rate = load_audio(path)
    assert rate == 22050 and abs(len(waveform) - len(tone)) <= 1024
    n = min(len(waveform), len(tone))
    assert np.corrcoef(waveform[:n], tone[:n])[0, 1] > 0.999


@pytest.mark.skipif("MP3" not in soundfile.available_formats(), reason="this libsndfile has no MP3 support")
def test_mp3_is_decoded(tmp_path):
    tone = sine(440, 2.0, 44100)
    path = tmp_path / "tone.mp3"
    soundfile.write(path, tone, 44100, format="MP3")
    waveform, rate = load_audio(path)
    assert rate == 44100 and abs(len(waveform) - len(tone)) <= 2304  # an MP3 encoder may add up to two frames
    assert dominant_frequency(waveform, rate) == pytest.approx(440, abs=1)
    assert audio_duration(path) == pytest.approx(2.0, abs=0.06)


def long_ramp_file(tmp_path, seconds: int = 120, rate: int = 8000):
    """A long int16 file whose every sample tells its own index (index mod 30000)."""
    codes = (np.arange(seconds * rate) % 30000).astype(np.int16)
    path = tmp_path / "long.wav"
    soundfile.write(path, codes, rate, subtype="PCM_16")
    return path, codes, rate


def test_offset_and_duration_read_exactly_that_part(tmp_path):
    path, codes, rate = long_ramp_file(tmp_path)
    waveform, _ = load_audio(path, offset=61.5, duration=2.25)
    start = int(61.5 * rate)
    np.testing.assert_array_equal(waveform, codes[start : start + int(2.25 * rate)] / np.float32(32768))
    tail, _ = load_audio(path, offset=119.0, duration=10.0)  # past the end: what is there
    assert len(tail) == rate
    assert audio_duration(path) == 120.0


def test_duration_decodes_only_the_frames_asked_for(tmp_path, monkeypatch):
    path, _, rate = long_ramp_file(tmp_path)
    decoded = []
    read = soundfile.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        data = read(self, frames, *args, **kwargs)
        decoded.append(len(data))
        return data

    monkeypatch.setattr(soundfile.SoundFile, "read", counting_read)
    load_audio(path, offset=100.0, duration=1.0)
    assert decoded == [rate]


def test_centred_window_is_the_middle_of_a_long_file_and_all_of_a_short_one(tmp_path, monkeypatch):
    path, codes, rate = long_ramp_file(tmp_path)  # 120 s
    decoded = []
    read = soundfile.SoundFile.read
    monkeypatch.setattr(soundfile.SoundFile, "read", lambda self, frames=-1, *a, **k: decoded.append(frames) or read(self, frames, *a, **k))
    middle = load_centred_window(path, rate, True, 10.0)
    np.testing.assert_array_equal(middle, codes[55 * rate : 65 * rate] / np.float32(32768))
    assert decoded == [10 * rate]  # the rest of the file is never decoded
    whole = load_centred_window(path, rate, True, 500.0)
    np.testing.assert_array_equal(whole, codes / np.float32(32768))


def test_nothing_but_valid_audio_is_accepted(tmp_path):
    cases = {}
    cases["missing"] = (tmp_path / "nope.wav", "no such audio file")
    cases["directory"] = (tmp_path, "is a directory")
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.wav", "empty (0 bytes)")
    soundfile.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    cases["zero samples"] = (tmp_path / "zero.wav", "no audio samples")
    soundfile.write(tmp_path / "good.wav", sine(440, 0.5, 16000), 16000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFX" + (tmp_path / "good.wav").read_bytes()[4:40])
    cases["corrupt header"] = (tmp_path / "corrupt.wav", "cannot be decoded")
    (tmp_path / "notes.wav").write_text("these are my notes, not a recording\n" * 20)
    cases["not audio"] = (tmp_path / "notes.wav", "cannot be decoded")
    for kind, (path, message) in cases.items():
        with pytest.raises(AudioError, match=re.escape(message)) as error:
            load_audio(path)
        assert str(path) in str(error.value), kind


def test_bad_offsets_and_non_finite_samples_are_rejected(tmp_path):
    path = tmp_path / "tone.wav"
    soundfile.write(path, sine(440, 1.0, 16000), 16000)
    with pytest.raises(AudioError, match="no audio samples after 5.0 s"):
        load_audio(path, offset=5.0)
    with pytest.raises(AudioError, match="offset must be"):
        load_audio(path, offset=-1.0)
    with pytest.raises(AudioError, match="duration must be"):
        load_audio(path, duration=0.0)
    broken = sine(440, 0.1, 16000)
    broken[10] = np.nan
    soundfile.write(tmp_path / "nan.wav", broken, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_levels_in_dbfs():
    assert rms_dbfs(np.ones(100)) == 0.0
    assert rms_dbfs(sine(100, 1.0, 8000, 1.0)) == pytest.approx(20 * math.log10(math.sqrt(0.5)), abs=1e-3)
    assert rms_dbfs(torch.full((10,), 1e-3)) == pytest.approx(-60.0)
    assert rms_dbfs(np.zeros(10)) == -math.inf


def test_silence_is_detected_and_named():
    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(1000, np.float32))
    assert is_silent(1e-5 * rng.standard_normal(44100))  # -100 dBFS
    assert not is_silent(1e-3 * rng.standard_normal(44100))  # -60 dBFS: quiet but real
    assert not is_silent(torch.from_numpy(sine(440, 0.1, 8000)))
    with pytest.raises(AudioError, match="quiet.wav: the sound is silent"):
        check_not_silent(np.zeros(100), "quiet.wav")
    check_not_silent(sine(440, 0.1, 8000), "tone.wav")


def test_a_pipe_is_not_called_empty(tmp_path):
    os.mkfifo(tmp_path / "live.wav")
    for read in (load_audio, audio_duration):
        with pytest.raises(AudioError, match=r"live.wav is not a regular file \(a pipe, device or socket\)"):
            read(tmp_path / "live.wav")


def test_garbage_says_what_failed_and_keeps_decoder_chatter_off_stderr(tmp_path, capfd):
    (tmp_path / "noise.mp3").write_bytes(b"ID3" + bytes(range(256)) * 20)  # libmpg123 warns about this ID3 tag on fd 2
    with pytest.raises(AudioError) as error:
        audio_duration(tmp_path / "noise.mp3")
    message = str(error.value)
    assert message.endswith("noise.mp3 cannot be read as audio by libsndfile or a system decoder: the file is corrupt or not audio; "
                            "convert it to WAV or FLAC")
    assert capfd.readouterr().err == ""


def test_too_short_a_sound_is_refused_by_name(tmp_path):
    soundfile.write(tmp_path / "click.wav", np.array([0.5], np.float32), 16000)
    with pytest.raises(AudioError, match=r"click.wav is 0.1 ms long; a sound needs at least 100 ms"):
        check_long_enough(tmp_path / "click.wav")
    soundfile.write(tmp_path / "note.wav", sine(440, 0.5, 16000), 16000)
    assert check_long_enough(tmp_path / "note.wav") == pytest.approx(0.5)


def test_a_many_channel_file_is_mixed_down_block_by_block_as_librosa_mixes_it(tmp_path):
    """An 8-channel file is never held whole: the channel mean is taken per decoded block, with librosa's numbers."""
    import tracemalloc

    rate, channels = 48000, 8
    data = np.random.default_rng(0).uniform(-0.5, 0.5, (rate * 20, channels)).astype(np.float32)
    path = tmp_path / "eight.flac"
    soundfile.write(path, data, rate, subtype="PCM_24")
    expected, _ = librosa.load(path, sr=16000, mono=True)
    tracemalloc.start()
    try:
        waveform, _ = load_audio(path, 16000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(waveform, expected)
    assert peak < data.nbytes / 2, f"{peak / 2**20:.1f} MiB for a file of {data.nbytes / 2**20:.1f} MiB decoded"
    np.testing.assert_array_equal(load_audio(path, mono=False)[0], librosa.load(path, sr=None, mono=False)[0])
