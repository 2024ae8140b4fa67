"""The toolkit's one audio loader: any file a user has, decoded, mixed down and resampled as librosa.load does.

Every encoder and every dataset reads audio through `load_audio`, so preprocessing cannot drift between
training, evaluation and editing. Files are read only as far as needed (seek + frame count).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import librosa
import numpy as np
import soundfile

from sgsim.errors import AudioError, SgsimNotice

if TYPE_CHECKING:
    import torch

SILENCE_DBFS = -90.0  # below this RMS level a clip carries no usable sound
MIN_SECONDS = 0.1  # shorter clips hold no recognisable sound (the SGSIM front end alone needs 1025 samples, 23 ms)
RESAMPLE_TYPE = "soxr_hq"  # librosa.load's default res_type (librosa >= 0.10)
MIXDOWN_BLOCK_FRAMES = 1 << 16  # frames decoded at a time when mixing down: an 8-channel 384 kHz file is never held whole


def _check_file(path: Path) -> None:
    """Reject paths that cannot hold audio before any decoder sees them."""
    if not path.exists():
        raise AudioError(f"{path}: no such audio file; check the path")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file; pass a .wav, .flac, .ogg or .mp3 file")
    if not path.is_file():
        raise AudioError(f"{path} is not a regular file (a pipe, device or socket); save the sound to a file and pass that")
    if path.stat().st_size == 0:
        raise AudioError(f"{path} is empty (0 bytes); the file was not written completely, record or copy it again")


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Discard what C decoders print straight to file descriptor 2 (libmpg123's ID3 warnings on a damaged or
    foreign file): the error we raise says what is wrong, in one line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (an embedding host): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _frame_count(seconds: float, rate: int) -> int:
    """Seconds to a whole number of frames, rounded as librosa.load rounds offset and duration."""
    return int(np.round(seconds * rate))


def _read_soundfile(path: Path, offset: float, duration: float | None, mono: bool) -> tuple[np.ndarray, int]:
    """Decode [C, T] float32 with libsndfile, seeking to `offset` and reading only `duration`; with `mono`, [1, T]
    mixed down block by block (the channel mean librosa.load takes, per sample, so the result is the same)."""
    with _native_stderr_silenced(), soundfile.SoundFile(str(path)) as audio_file:
        rate = audio_file.samplerate
        start = _frame_count(offset, rate)
        if start > 0:
            if start >= audio_file.frames:
                return np.zeros((audio_file.channels, 0), np.float32), rate
            audio_file.seek(start)
        frames = -1 if duration is None else _frame_count(duration, rate)
        if not mono or audio_file.channels == 1:
            return audio_file.read(frames, dtype="float32", always_2d=True).T, rate
        blocks = [block.T.mean(axis=0) for block in
                  audio_file.blocks(MIXDOWN_BLOCK_FRAMES, frames=frames, dtype="float32", always_2d=True)]
    return np.concatenate([np.zeros(0, np.float32), *blocks])[None], rate


def _read_audioread(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    """Decode [C, T] float32 with the system decoders audioread finds (ffmpeg, GStreamer, Core Audio)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa announces its audioread fallback as deprecated
        data, rate = librosa.load(str(path), sr=None, mono=False, offset=offset, duration=duration)
    return np.atleast_2d(data), int(rate)


def _decode(path: Path, offset: float, duration: float | None, mono: bool) -> tuple[np.ndarray, int]:
    """Decode with libsndfile (wav, flac, ogg, mp3 from libsndfile 1.1) and fall back to audioread."""
    try:
        return _read_soundfile(path, offset, duration, mono)
    except soundfile.LibsndfileError as sndfile_error:
        try:
            return _read_audioread(path, offset, duration)
        except Exception as fallback_error:
            raise AudioError(
                f"{path} cannot be decoded as audio (libsndfile: {sndfile_error}; audioread: "
                f"{type(fallback_error).__name__} {fallback_error or 'no system decoder such as ffmpeg'}); "
                f"the file is corrupt or not audio, "
                f"convert it to WAV or FLAC"
            ) from sndfile_error


def audio_duration(path: str | Path) -> float:
    """Length of an audio file in seconds, read from its header without decoding it."""
    path = Path(path)
    _check_file(path)
    try:
        with _native_stderr_silenced():
            info = soundfile.info(str(path))
        return info.frames / info.samplerate
    except soundfile.LibsndfileError:
        pass  # its message for an unrecognised file ("possibly a pipe?") would mislead; the line below says what is known
    try:
        with warnings.catch_warnings(), _native_stderr_silenced():
            warnings.simplefilter("ignore")
            return float(librosa.get_duration(path=str(path)))
    except Exception as error:
        raise AudioError(
            f"{path} cannot be read as audio by libsndfile or a system decoder: the file is corrupt or not audio; "
            f"convert it to WAV or FLAC"
        ) from error


def check_long_enough(path: str | Path) -> float:
    """The length of an audio file in seconds, refused (naming the file) below MIN_SECONDS: too short to be heard
    as a sound, and shorter than the analysis window of every audio encoder."""
    seconds = audio_duration(path)
    if seconds < MIN_SECONDS:
        raise AudioError(f"{path} is {seconds * 1000:.1f} ms long; a sound needs at least {MIN_SECONDS * 1000:.0f} ms, "
                         f"pass a longer recording")
    return seconds


def load_audio(
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read `duration` seconds from `offset` of an audio file as float32 in [-1, 1], [T] if mono else [C, T].

    Same result as librosa.load(path, sr=sample_rate, mono=mono, offset=offset, duration=duration):
    channels averaged, then resampled with soxr_hq. `sample_rate` None keeps the file's rate.
    """
    path = Path(path)
    _check_file(path)
    if offset < 0 or not math.isfinite(offset):
        raise AudioError(f"{path}: offset must be a finite number of seconds >= 0, got {offset}")
    if duration is not None and (duration <= 0 or not math.isfinite(duration)):
        raise AudioError(f"{path}: duration must be a finite number of seconds > 0 or None, got {duration}")
    waveform, rate = _decode(path, offset, duration, mono)
    if waveform.shape[-1] == 0:
        where = f" after {offset} s" if offset else ""
        raise AudioError(f"{path} has no audio samples{where}; pass a recording that contains sound")
    if not np.isfinite(waveform).all():
        raise AudioError(f"{path} contains NaN or infinite samples; the file is corrupt, export it again")
    if mono:
        waveform = waveform.mean(axis=0)
    if sample_rate is not None and sample_rate != rate:
        waveform = librosa.resample(waveform, orig_sr=rate, target_sr=sample_rate, res_type=RESAMPLE_TYPE)
        rate = sample_rate
    return np.ascontiguousarray(waveform, dtype=np.float32), rate


def load_centred_window(path: str | Path, sample_rate: int, mono: bool, seconds: float) -> np.ndarray:
    """All of an audio file at `sample_rate`, or its centred `seconds` when it is longer (with a warning).

    What an encoder is given: encoders embed whole clips as their authors do, and `seconds`
    (AudioEncoder.input_seconds) caps decoding so an hour-long file stays cheap
    (docs/encoders.md#the-decoding-cap).
    """
    duration = audio_duration(path)
    offset = max(0.0, (duration - seconds) / 2)
    if offset > 0:
        warnings.warn(f"{path} lasts {duration:.1f} s; only its centred {seconds:g} s are used", category=SgsimNotice, stacklevel=2)
    waveform, _ = load_audio(path, sample_rate, mono, offset=offset, duration=seconds)
    return waveform


def rms_dbfs(waveform: np.ndarray | torch.Tensor) -> float:
    """Root-mean-square level of a waveform (numpy array or tensor) in dB relative to full scale."""
    if hasattr(waveform, "detach"):
        waveform = waveform.detach().cpu().numpy()
    samples = np.asarray(waveform, dtype=np.float64)
    rms = math.sqrt(float(np.mean(np.square(samples)))) if samples.size else 0.0
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def is_silent(waveform: np.ndarray | torch.Tensor) -> bool:
    """True for an all-zero waveform or one whose RMS level is below -90 dBFS."""
    return rms_dbfs(waveform) < SILENCE_DBFS


def check_not_silent(waveform: np.ndarray | torch.Tensor, path: str | Path) -> None:
    """Raise AudioError when a clip is silent: it would steer an edit by nothing but noise."""
    if is_silent(waveform):
        raise AudioError(
            f"{path}: the sound is silent (RMS {rms_dbfs(waveform):.1f} dBFS, below {SILENCE_DBFS:.0f} dBFS); "
            f"pass a recording with audible sound"
        )
