"""Sound-driven video (sgsim.editing.video) on tiny real-format networks and a track of two real sounds with a silent gap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F

from sgsim.editing.video import (QUIET_WINDOW_DBFS, RENDER_BATCH, audible_windows, embed_keyframes, frame_count, interpolate,
                                 keyframe_times, window_span, write_video)
from sgsim.errors import AudioError, SgsimError

RATE = 44100
SOUND_SECONDS, GAP_SECONDS = 3.0, 3.0  # raining, silence, wind: the gap_track fixture's defaults
WINDOW = 1.0  # a 1 s window fits inside the gap, so the gap's inner keyframes hear nothing
STEPS = 3


@pytest.fixture(scope="module")
def track(gap_track, tmp_path_factory) -> Path:
    return gap_track(tmp_path_factory.mktemp("track") / "rain-gap-wind.wav").path


@pytest.fixture(scope="module")
def video(editor, track):
    return editor.video(track, 0, fps=12, window=WINDOW, steps=STEPS)


def in_gap(times: np.ndarray) -> np.ndarray:
    """Times whose whole WINDOW lies in the silent gap."""
    return (times - WINDOW / 2 >= SOUND_SECONDS) & (times + WINDOW / 2 <= SOUND_SECONDS + GAP_SECONDS)


def test_keyframe_and_frame_timing():
    np.testing.assert_allclose(keyframe_times(9.0, 0.5), np.arange(19) * 0.5)
    np.testing.assert_allclose(keyframe_times(1.2, 0.5), [0, 0.5, 1.0, 1.2])  # the track's end is a keyframe
    np.testing.assert_allclose(keyframe_times(0.3, 0.5), [0, 0.3])
    assert frame_count(9.0, 24) == 216 and frame_count(1.01, 24) == 24 and frame_count(1.03, 24) == 25
    assert window_span(0.0, 9.0, 2.0) == (0.0, 2.0) and window_span(9.0, 9.0, 2.0) == (7.0, 2.0)  # kept inside the track
    assert window_span(4.0, 9.0, 2.0) == (3.0, 2.0) and window_span(0.4, 1.5, 2.0) == (0.0, 1.5)


def test_interpolation_is_linear_in_w_plus_between_the_bracketing_keyframes():
    latents = torch.tensor([0.0, 2.0, 10.0])[:, None, None].expand(3, 2, 2)
    at = interpolate(np.array([0.0, 1.0, 3.0]), latents, np.array([0.0, 0.25, 1.0, 2.0, 3.0]))
    assert at[:, 0, 0].tolist() == [0.0, 0.5, 2.0, 6.0, 10.0]


def test_frames_cover_the_track_at_fps_with_their_times(video):
    assert video.duration == pytest.approx(9.0) and len(video) == frame_count(9.0, 12) == 108
    frames = list(video.frames(start=100))
    assert [f.index for f in frames] == list(range(100, 108))
    assert [f.time for f in frames] == pytest.approx([i / 12 for i in range(100, 108)])
    assert frames[0].image.shape == (3, 32, 32) and torch.isfinite(frames[0].image).all()


def test_a_silent_gap_has_no_target_and_its_keyframes_stay_at_the_source(editor, video):
    gap = in_gap(video.keyframe_times)
    assert gap.sum() == 5  # 3.5, 4.0, ..., 5.5 s
    np.testing.assert_array_equal(video.audible, ~gap)
    assert torch.equal(video.keyframe_latents[gap], video.source_latent.expand(int(gap.sum()), -1, -1))
    assert (video.strengths[gap] == 0).all() and (video.strengths[~gap] > 0).all()
    # the CLIP term of a keyframe without a target contributes nothing; the others aim at their sound
    assert (video.losses["clip"][:, gap] == 0).all() and (video.losses["clip"][:, ~gap] > 0).all()
    # frames between two silent keyframes show the source image itself (up to batched float rounding)
    frames = list(video.frames(start=4 * 12, stop=5 * 12 + 1))
    source = editor.render(video.source_latent[None])[0]
    assert all(torch.equal(frame.latent, video.source_latent) for frame in frames)
    for frame in frames:
        torch.testing.assert_close(frame.image, source, rtol=0, atol=1e-5)


def test_targets_of_different_sounds_differ_and_the_frames_move_between_them(editor, track, video):
    targets = embed_keyframes(track, video.keyframe_times, editor.audio_encoder, WINDOW)
    rain, wind = targets.directions[[2, 3]], targets.directions[[14, 15]]  # 1.0, 1.5 s and 7.0, 7.5 s
    within = min(F.cosine_similarity(rain[0], rain[1], dim=0), F.cosine_similarity(wind[0], wind[1], dim=0))
    across = F.cosine_similarity(rain[0], wind[0], dim=0)
    assert 1 - across > 10 * (1 - within), (across, within)  # the sounds differ far more than a sound moves in 0.5 s
    assert torch.equal(targets.directions[in_gap(targets.times)], torch.zeros(5, 512))
    # the picture under the rain differs from the picture under the wind, and from the source
    first, second = (next(video.frames(start=i, stop=i + 1)) for i in (12, 7 * 12))
    assert (first.image - second.image).abs().max() > 0.01
    assert not torch.equal(first.latent, video.source_latent) and not torch.equal(second.latent, video.source_latent)
    # a frame between two keyframes lies on the line between them in W+
    middle = next(video.frames(start=15, stop=16))  # 1.25 s, halfway between the keyframes at 1.0 and 1.5 s
    torch.testing.assert_close(middle.latent, video.keyframe_latents[[2, 3]].mean(0))


def test_same_seed_gives_identical_frames(editor, track, video):
    again = editor.video(track, 0, fps=12, window=WINDOW, steps=STEPS)
    assert torch.equal(again.keyframe_latents, video.keyframe_latents)
    for a, b in zip(again.frames(stop=30), video.frames(stop=30)):
        assert torch.equal(a.image, b.image)


def test_loudness_scales_each_keyframes_strength(editor, track, video):
    flat = editor.video(track, 0, fps=12, window=WINDOW, steps=STEPS, loudness=False, strength=0.5)
    assert set(flat.strengths[flat.audible]) == {0.5} and set(flat.strengths[~flat.audible]) == {0.0}
    louder = video.levels_dbfs[2] > video.levels_dbfs[15]
    assert (video.strengths[2] > video.strengths[15]) == louder


def test_frames_are_rendered_a_batch_at_a_time(video):
    calls = []
    render = video.render
    stream = video.frames(progress=lambda stage, done, total: calls.append((stage, done, total)))
    try:
        video.render = lambda latents: calls.append(len(latents)) or render(latents)
        next(stream)
        assert calls == [RENDER_BATCH]  # the first frame needs one batch, not the whole video
    finally:
        video.render = render


def test_write_video_muxes_the_track_and_has_its_length(video, tmp_path):
    out = tmp_path / "clip.mp4"
    assert write_video(out, video) == len(video)
    with av.open(str(out)) as container:
        pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(out)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].rate
    assert len(pictures) == len(video) and pictures[0].shape == (32, 32, 3)
    assert abs(samples / rate - video.duration) < 1 / video.fps
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_quiet_means_under_the_absolute_floor_or_far_under_the_loudest_window():
    assert audible_windows(np.array([-20.0, -44.0, -46.0, -70.0])).tolist() == [True, True, False, False]
    assert audible_windows(np.array([-50.0, -59.0, -61.0, -np.inf])).tolist() == [True, True, False, False]


def test_a_noise_floor_between_two_sounds_has_no_target_either(editor, gap_track, tmp_path):
    floor = gap_track(tmp_path / "floor.wav", floor_dbfs=-52.0)  # above QUIET_WINDOW_DBFS, 28 dB under the sounds
    times = keyframe_times(9.0, 0.5)
    targets = embed_keyframes(floor.path, times, editor.audio_encoder, window=WINDOW)
    gap = in_gap(times)
    assert gap.sum() == 5 and (targets.levels_dbfs[gap] > QUIET_WINDOW_DBFS).all()
    np.testing.assert_array_equal(targets.audible, ~gap)
    assert (targets.directions[gap] == 0).all()
    torch.testing.assert_close(targets.directions[~gap].norm(dim=-1), torch.ones(int((~gap).sum())))


def test_silent_only_corrupt_and_bad_settings_are_refused(editor, tmp_path):
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.full(3 * RATE, 1e-5, np.float32), RATE)  # -100 dBFS: no window is audible
    with pytest.raises(AudioError, match="no sound for the picture to follow"):
        editor.video(silent, 0, steps=1)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(20))
    with pytest.raises(AudioError, match="corrupt"):
        editor.video(corrupt, 0, steps=1)
    for bad in ({"fps": 0}, {"fps": float("nan")}, {"keyframe_every": -1}, {"window": 0.01}, {"strength": float("inf")}):
        with pytest.raises(SgsimError):
            editor.video(silent, 0, **bad)


# Run in a fresh interpreter: the highest resident memory (sampled after every rendered batch) while a video of a long
# track is rendered and encoded, above what the process held before; then (with "hold") the same while all its frames
# are kept, as a renderer that did not stream would keep them: proof that the probe sees frames held. Sampled, not
# ru_maxrss: loading the networks peaks higher than rendering, which would hide any growth under that old peak.
MEMORY_PROBE = """
import json, os, sys
from dataclasses import replace
import open_clip, torch
torch.set_num_threads(1)
clip_config, clip_weights, generator, encoder, track, fps, hold, out = sys.argv[1:]
open_clip.add_model_config(clip_config)
from encoders.registry import ENCODERS
ENCODERS["sgsim-resnet18"] = replace(ENCODERS["sgsim-resnet18"], clip_model="{name}", clip_weights=clip_weights)
from sgsim.editing import Editor
from sgsim.editing.video import write_video
editor = Editor.from_pretrained(generator, "sgsim-resnet18", encoder_checkpoint=encoder, device="cpu")
video = editor.video(track, 0, fps=float(fps), keyframe_every=5.0, window=1.0, steps=1)
write_video(out + ".warm.mp4", replace(video, duration=1.0))  # codecs, decoders and buffers warmed up on 1 s
page = os.sysconf("SC_PAGE_SIZE") // 1024
resident = lambda: int(open("/proc/self/statm").read().split()[1]) * page  # KiB
before, highest = resident(), [0]
sample = lambda stage, done, total: highest.append(resident() - before)
kept = list(video.frames(progress=sample)) if hold == "hold" else []
written = write_video(out + ".mp4", video, progress=sample)
print(json.dumps({{"frames": written, "growth_kib": max(highest)}}))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc (Linux)")
def test_peak_memory_does_not_grow_with_the_number_of_frames(gap_track, tmp_path, tiny_clip_file, tiny_clip_name,
                                                            tiny_generator_file, encoder_checkpoint_file):
    track = gap_track(tmp_path / "long.wav", gap=20.0).path  # 26 s
    probe = MEMORY_PROBE.format(name=tiny_clip_name)

    def start(fps: int, hold: str) -> subprocess.Popen:
        args = [str(tiny_clip_file.parent / f"{tiny_clip_name}.json"), str(tiny_clip_file), str(tiny_generator_file),
                str(encoder_checkpoint_file), str(track), str(fps), hold]
        out = tmp_path / f"{fps}-{hold}"  # each probe its own output files
        return subprocess.Popen([sys.executable, "-c", probe, *args, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(probe_process: subprocess.Popen) -> dict:
        stdout, stderr = probe_process.communicate(timeout=600)
        assert probe_process.returncode == 0, stderr
        return json.loads(stdout.strip().splitlines()[-1])

    # The three probes run side by side: each measures its own process's memory.
    few, many, held = [result(process) for process in [start(2, "stream"), start(60, "stream"), start(60, "hold")]]
    assert (few["frames"], many["frames"]) == (52, 1560)
    assert held["growth_kib"] - few["growth_kib"] > 12 * 1024, (few, held)  # 1560 frames of 3x32x32 floats and latents: 19 MiB
    # 30 x the frames: what grows with the frame count (the planned W+ latents, 1560 x 8 x 32 floats, and per-frame
    # numbers: a few MiB, allocator-dependent) stays well under what holding the frames costs in the same run.
    assert many["growth_kib"] - few["growth_kib"] < 0.4 * (held["growth_kib"] - few["growth_kib"]), (few, many, held)


def test_a_learned_direction_moves_each_keyframe_as_far_as_its_window_sounds_like_it(editor, track, video):
    from sgsim.editing.directions import SoundDirection, architecture

    target = embed_keyframes(track, video.keyframe_times, editor.audio_encoder, WINDOW).directions[2]  # the rain at 1 s
    offset = torch.randn(editor.generator.num_ws, editor.generator.w_dim, generator=torch.Generator().manual_seed(0))
    rain = SoundDirection(name="rain", offset=offset, target=target, generator={"architecture": architecture(editor.generator)})
    instant = editor.video(track, 0, fps=12, window=WINDOW, steps=0, direction=rain, loudness=False)
    reach = np.array(instant.settings["direction"]["reach"])
    assert reach[2] == pytest.approx(1.0) and (reach[in_gap(instant.keyframe_times)] == 0).all() and (reach <= 1 + 1e-6).all()
    expected = instant.source_latent + torch.as_tensor(reach, dtype=torch.float32)[:, None, None] * offset
    torch.testing.assert_close(instant.keyframe_latents, expected)
    assert instant.losses == {}
    optimised = editor.video(track, 0, fps=12, window=WINDOW, steps=STEPS, direction=rain)
    assert optimised.losses["clip"].shape == (STEPS, len(video.keyframe_times))
    with pytest.raises(SgsimError, match="steps"):
        editor.video(track, 0, steps=0)


def test_keyframes_in_micro_batches_start_from_their_neighbour_and_are_deterministic(editor, track):
    options = dict(fps=12, window=WINDOW, steps=STEPS, keyframe_batch=4, loudness=False)
    warm = editor.video(track, 0, warm_steps=2, **options)
    again = editor.video(track, 0, warm_steps=2, **options)
    assert torch.equal(warm.keyframe_latents, again.keyframe_latents)
    assert all(np.array_equal(warm.losses[name], again.losses[name], equal_nan=True) for name in warm.losses)
    # a micro-batch of fewer steps fills the last rows of the history; the final row holds every keyframe's loss
    assert np.isnan(warm.losses["clip"][0, 4:]).all() and np.isfinite(warm.losses["clip"][-1]).all()
    assert warm.settings["keyframe_batch"] == 4 and warm.settings["warm_steps"] == 2
    assert warm.settings["work_resolution"]["used"] is None
    # The ramped schedule's first step has lr 0: with one warm step each later keyframe stays where its warm start put
    # it, at the optimised latent of the keyframe before its micro-batch (silent keyframes stay at the source).
    still = editor.video(track, 0, warm_steps=1, **options)
    latents, audible = still.keyframe_latents, still.audible
    assert (latents[3] - still.source_latent).abs().amax() > 0
    for k in range(4, len(latents)):
        expected = latents[k // 4 * 4 - 1] if audible[k] else still.source_latent
        torch.testing.assert_close(latents[k], expected, rtol=0, atol=1e-6)


def test_keyframe_batch_and_warm_steps_are_checked(editor, track):
    with pytest.raises(SgsimError, match="keyframe_batch"):
        editor.video(track, 0, steps=1, keyframe_batch=0)
    with pytest.raises(SgsimError, match="warm_steps"):
        editor.video(track, 0, steps=1, warm_steps=0)
