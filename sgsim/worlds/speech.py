"""The shapes world's sounds: its seven words and short phrases spoken by espeak-ng over many voices, speeds and
pitches, with light noise and a simple room, written as a dataset `sgsim train-encoder` and `compare-encoders` read.

Only the build runs the speech engine; the clips it writes are ordinary WAV files. A voice is an espeak-ng accent
with a variant; test voices use variants and an accent that no training clip uses, so the held-out accuracy is on
voices the encoder never heard.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sgsim.atomic import atomic_output
from sgsim.errors import SgsimError
from sgsim.worlds.shapes import COLOURS, SHAPES, WORDS

SAMPLE_RATE = 22050  # espeak-ng's output rate; sgsim's loader resamples to each encoder's own
ENGINE = "espeak-ng"
TRAIN_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
TEST_ACCENTS = ("en-029",)  # Caribbean English: heard only in the test set
# Variants: espeak's formant voices (m*, f*, named) and its Klatt synthesiser family (klatt*).
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt", "klatt3", "croak", "Andy", "anika", "edward", "steph")
TEST_VARIANTS = ("m5", "m7", "f4", "klatt2", "Annie", "john")
PHRASES = tuple(f"a {colour} {shape}" for colour in COLOURS for shape in SHAPES)
SEQUENCE = ("red", "blue", "green")  # spoken with pauses, for videos
SEQUENCE_PAUSE = 1.2  # seconds of silence between the sequence's words


class SpeechError(SgsimError):
    """The speech engine is missing or failed."""


@dataclass(frozen=True)
class SpeechScale:
    """How many clips the dataset holds."""

    train_voices: int  # (accent, variant) pairs drawn for training, each speaking every word `takes` times
    test_voices: int  # held-out pairs, each speaking every word once
    takes: int  # renditions of each word per training voice, at other speeds and pitches
    phrase_takes: int  # renditions of the 12 phrases per training voice


SCALES = {"toy": SpeechScale(train_voices=4, test_voices=2, takes=1, phrase_takes=0),
          "full": SpeechScale(train_voices=60, test_voices=30, takes=4, phrase_takes=1)}


@dataclass(frozen=True)
class Utterance:
    """One clip to synthesise: what is said, by which voice, how, and the seed of its augmentation."""

    text: str
    accent: str
    variant: str
    speed: int  # words per minute
    pitch: int  # espeak pitch, 0-99
    seed: int

    @property
    def voice(self) -> str:
        return f"{self.accent}+{self.variant}"


def engine_path() -> str:
    """The espeak-ng executable, or an error saying how to install it (only building a world needs it)."""
    path = shutil.which(ENGINE)
    if path is None:
        raise SpeechError(f"{ENGINE} is not installed; building a world's speech needs it: apt-get install espeak-ng")
    return path


def speak(utterance: Utterance) -> np.ndarray:
    """The engine's float32 waveform at SAMPLE_RATE for one utterance, without augmentation."""
    with tempfile.TemporaryDirectory(prefix="sgsim-speech-") as folder:
        target = Path(folder) / "clip.wav"
        command = [engine_path(), "-v", utterance.voice, "-s", str(utterance.speed), "-p", str(utterance.pitch), "-w", str(target),
                   utterance.text]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or not target.is_file():
            raise SpeechError(f"{ENGINE} failed for voice {utterance.voice!r} ({result.stderr.strip()[:200] or 'no message'})")
        with wave.open(str(target)) as stream:
            if stream.getframerate() != SAMPLE_RATE or stream.getsampwidth() != 2:
                raise SpeechError(f"{ENGINE} wrote {stream.getframerate()} Hz, {8 * stream.getsampwidth()}-bit audio; expected {SAMPLE_RATE} Hz 16-bit")
            samples = np.frombuffer(stream.readframes(stream.getnframes()), dtype="<i2")
    return samples.astype(np.float32) / 32768.0


def room_impulse(rng: np.random.Generator, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A small room: the direct sound plus exponentially decaying noise with an RT60 of 0.1-0.4 s, 10-40 % wet."""
    rt60 = rng.uniform(0.1, 0.4)
    t = np.arange(int(rt60 * rate)) / rate
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # 60 dB down (e^-6.9) at rt60
    tail *= rng.uniform(0.1, 0.4) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return tail.astype(np.float32)


def augment(waveform: np.ndarray, rng: np.random.Generator, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Room, a random lead-in of silence (0-0.3 s), noise at 20-40 dB SNR and a random level: light, as the issue asks."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(waveform, room_impulse(rng, rate))[: len(waveform) + rate // 4]
    wet = np.concatenate([np.zeros(int(rng.uniform(0, 0.3) * rate), np.float32), wet])
    power = np.mean(wet**2) + 1e-12
    noise = rng.standard_normal(len(wet)) * np.sqrt(power / 10 ** (rng.uniform(20, 40) / 10))
    mixed = wet + noise
    return (mixed * rng.uniform(0.3, 0.9) / (np.abs(mixed).max() + 1e-9)).astype(np.float32)


def write_wav(path: Path, waveform: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """16-bit mono WAV, written atomically."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as stream:
        stream.setnchannels(1)
        stream.setsampwidth(2)
        stream.setframerate(rate)
        stream.writeframes((np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes())
    with atomic_output(path) as out:
        out.write(buffer.getvalue())


def _voices(rng: np.random.Generator, accents: tuple[str, ...], variants: tuple[str, ...], count: int) -> list[tuple[str, str]]:
    """`count` distinct (accent, variant) pairs, drawn without replacement (all of them when fewer exist)."""
    pairs = [(accent, variant) for accent in accents for variant in variants]
    order = rng.permutation(len(pairs))[: min(count, len(pairs))]
    return [pairs[i] for i in sorted(order)]


def plan(seed: int, scale: SpeechScale) -> dict[str, list[Utterance]]:
    """Every clip of the dataset by split ("train", "test"): the same seed, the same plan."""
    rng = np.random.default_rng([seed, 1])

    def utterance(text: str, accent: str, variant: str) -> Utterance:
        return Utterance(text, accent, variant, int(rng.integers(120, 221)), int(rng.integers(25, 76)), int(rng.integers(2**31)))

    train_voices = _voices(rng, TRAIN_ACCENTS, TRAIN_VARIANTS, scale.train_voices)
    test_voices = _voices(rng, TRAIN_ACCENTS + TEST_ACCENTS, TEST_VARIANTS, scale.test_voices - 1) + [(TEST_ACCENTS[0], TRAIN_VARIANTS[0])]
    train = [utterance(word, *voice) for voice in train_voices for word in WORDS for _ in range(scale.takes)]
    train += [utterance(phrase, *voice) for voice in train_voices for phrase in PHRASES for _ in range(scale.phrase_takes)]
    test = [utterance(word, *voice) for voice in test_voices for word in WORDS]
    return {"train": train, "test": test}


def _file_name(number: int, utterance: Utterance) -> str:
    return f"{number:05d}_{utterance.text.replace(' ', '_')}_{utterance.accent}+{utterance.variant}.wav"


def write_dataset(out_dir: str | Path, seed: int, scale: SpeechScale, progress: Callable[[int, int], None] | None = None) -> dict:
    """Synthesise every planned clip into `out_dir/{train,test}/` with `train.csv` and `test.csv` (path, label, fold),
    plus `sequence.wav` and its word timings; clips already written are kept, so a killed run resumes.

    Folds group clips by voice (five folds for training, so `train-encoder` validates on voices it does not train
    on); the test CSV holds only held-out voices and only the seven words.
    """
    engine_path()
    out_dir = Path(out_dir)
    clips = plan(seed, scale)
    total, done = sum(len(split) for split in clips.values()), 0
    summary = {"engine": ENGINE, "sample_rate": SAMPLE_RATE, "clips": {}}
    for split, utterances in clips.items():
        voices = sorted({u.voice for u in utterances})
        rows = []
        for number, utterance in enumerate(utterances):
            path = out_dir / split / _file_name(number, utterance)
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_wav(path, augment(speak(utterance), np.random.default_rng(utterance.seed)))
            fold = 1 + voices.index(utterance.voice) % 5
            rows.append({"path": f"{split}/{path.name}", "label": utterance.text, "fold": fold, "voice": utterance.voice,
                         "speed": utterance.speed, "pitch": utterance.pitch})
            done += 1
            if progress:
                progress(done, total)
        _write_csv(out_dir / f"{split}.csv", rows)
        summary["clips"][split] = {"count": len(rows), "voices": voices}
    summary["sequence"] = write_sequence(out_dir / "sequence.wav", seed)
    return summary


def write_sequence(path: Path, seed: int) -> list[dict]:
    """'red ... blue ... green' by a held-out voice, with SEQUENCE_PAUSE s between words; returns each word's span."""
    rng = np.random.default_rng([seed, 2])
    pieces, spans, at = [np.zeros(SAMPLE_RATE // 2, np.float32)], [], SAMPLE_RATE // 2
    for word in SEQUENCE:
        spoken = speak(Utterance(word, TEST_ACCENTS[0], TEST_VARIANTS[0], 160, 50, 0))
        spans.append({"word": word, "start": at / SAMPLE_RATE, "end": (at + len(spoken)) / SAMPLE_RATE})
        pieces += [spoken, np.zeros(int(SEQUENCE_PAUSE * SAMPLE_RATE), np.float32)]
        at += len(spoken) + int(SEQUENCE_PAUSE * SAMPLE_RATE)
    write_wav(path, augment(np.concatenate(pieces), rng)[: at + SAMPLE_RATE // 2])
    return spans


def to_flac(source: Path, target: Path) -> None:
    """A WAV clip re-encoded as 16-bit FLAC (lossless, about half the bytes), written atomically."""
    import soundfile

    audio, rate = soundfile.read(str(source), dtype="float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="FLAC", subtype="PCM_16")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as out:
        out.write(buffer.getvalue())


def _write_csv(path: Path, rows: list[dict]) -> None:
    """A headed CSV, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(path) as out:
        out.write(buffer.getvalue().encode())
