"""How far each parity comparison sits from its bound under the kernels this process runs (not a test).

Prints error / bound per comparison (<= 1 passes); with --mistakes also the deliberately wrong implementations
the tests feed (> 1 fails). Compare kernel paths by running it under each setting (docs/tolerances.md):

    PYTHONPATH=$PWD:$PWD/tests OMP_NUM_THREADS=1 MKL_CBWR=COMPATIBLE python tests/tolerance_margins.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS), str(TESTS / "encoders"), str(TESTS / "sgsim"), str(TESTS / "stylegan2")]

from conftest import seeded_state_dict  # noqa: E402  (tests/conftest.py: the seeded weights the goldens used)
from tolerances import parity_tolerance, relative_l2  # noqa: E402


def report(family: str, case: str, ratio: float) -> None:
    print(f"{family:10s} {case:45s} {ratio:.3g}", flush=True)


def stylegan2(mistakes: bool) -> None:
    """Worst ws / image-from-ws / image-from-z ratio per fixture (test_parity)."""
    from stylegan2 import load_generator

    data = TESTS / "data" / "stylegan2"
    for case in json.loads((data / "fixtures.json").read_text())["cases"]:
        if "outputs" not in case:
            continue
        G = load_generator(data / case["file"], network=case["network"])
        arrays = dict(np.load(data / case["outputs"]))
        worst = {"ws": 0.0, "image from ws": 0.0, "image from z": 0.0}
        for k, psi in enumerate(arrays["psi"].tolist()):
            cutoff = None if arrays["cutoff"][k] < 0 else int(arrays["cutoff"][k])
            z, c, ws_nvidia, img_nvidia = (torch.from_numpy(arrays[key][k]) for key in ("z", "c", "ws", "img"))
            with torch.no_grad():
                pairs = {"ws": (G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff), ws_nvidia, G.mapping),
                         "image from ws": (G.synthesis(ws_nvidia, noise_mode="const", force_fp32=True), img_nvidia, G.synthesis),
                         "image from z": (G(z, c, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode="const", force_fp32=True), img_nvidia, G)}
            for name, (ours, reference, network) in pairs.items():
                worst[name] = max(worst[name], relative_l2(ours, reference) / parity_tolerance(network))
        for name, ratio in worst.items():
            report("stylegan2", f"{case['file']} {name}", ratio)
    if mistakes:
        import test_parity as t

        class Patch:  # the monkeypatch the test uses, kept for the rest of this process's run of one mistake
            def setitem(self, mapping, key, value):
                self.undo = lambda old=mapping[key]: mapping.__setitem__(key, old)
                mapping[key] = value

            def setattr(self, owner, name, value):
                self.undo = lambda old=getattr(owner, name): setattr(owner, name, old)
                setattr(owner, name, value)

        G = load_generator(data / "ada_skip32.pkl", network="G_ema")
        arrays = dict(np.load(data / "ada_skip32.npz"))
        z, c, img_nvidia = (torch.from_numpy(arrays[key][0]) for key in ("z", "c", "img"))
        for label, mistake in t.MISTAKES.items():
            patch = Patch()
            mistake(patch)
            with torch.no_grad():
                img = G(z, c, truncation_psi=float(arrays["psi"][0]), noise_mode="const", force_fp32=True)
            patch.undo()
            report("stylegan2", f"{label}: image from z", relative_l2(img, img_nvidia) / parity_tolerance(G))


def identity(mistakes: bool) -> None:
    """Each ArcFace embedding's ratio (test_identity); the mistake: the face crop one row low."""
    import test_identity as t

    net = t.ArcFace(t.IR_SE50)
    state = seeded_state_dict(net.state_dict(), 11)
    for key, value in state.items():
        if key.endswith("weight") and value.dim() == 1 and key.replace("weight", "running_var") in state:
            state[key] = torch.ones_like(value)
    net.load_state_dict(state)
    net.eval()
    golden = dict(np.load(TESTS / "data" / "identity" / "styleclip_arcface_seed11.npz"))

    def run(label: str) -> None:
        with torch.no_grad():
            for faces, key in zip(t.golden_faces(), ("embeddings256", "embeddings64")):
                for i, (ours, reference) in enumerate(zip(net.embed(faces).numpy(), golden[key])):
                    report("identity", f"{label}{key}[{i}]", relative_l2(ours, reference) / t.embedding_tolerance(net))

    run("")
    if mistakes:
        t.identity._FACE_ROWS = slice(36, 224)
        run("crop one row low: ")
        t.identity._FACE_ROWS = slice(35, 223)


def lpips(mistakes: bool) -> None:
    """LPIPS features and distances (test_lpips); the mistake: input scaling in BGR order."""
    import tempfile
    import warnings

    import test_lpips as t

    reference = t._ReferenceVgg16()
    state = seeded_state_dict(reference.state_dict(), 3)
    state.update({k: v.abs() for k, v in state.items() if k.startswith("lpips")})
    reference.load_state_dict(state)
    path = Path(tempfile.mkdtemp()) / "vgg16.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(reference.eval()).save(str(path))
    net = t.read_lpips(path)
    a, b = t.seeded_images()

    def run(label: str) -> None:
        with torch.no_grad():
            fa, fb = reference((a + 1) * 127.5), reference((b + 1) * 127.5)
            for i, (ours, expected) in enumerate(zip(net.features(a), fa)):
                report("lpips", f"{label}features[{i}]", relative_l2(ours, expected) / t.feature_tolerance(net))
            published = t._published_lpips(reference, a, b)
            ratios = (net(a, b) - published).abs() / published / t.distance_tolerance(net, fa, fb)
            for i, ratio in enumerate(ratios.tolist()):
                report("lpips", f"{label}distance[{i}]", ratio)

    run("")
    if mistakes:
        net.shift, net.scale = net.shift.flip(1), net.scale.flip(1)
        run("BGR: ")


def sgsim_encoder(mistakes: bool) -> None:
    """SGSIM front end (worst bin) and embeddings (test_sgsim_encoder); mistakes: a symmetric window, cropping
    before the dB step."""
    import test_sgsim_encoder as t

    data = TESTS / "data"
    reference = dict(np.load(t.REFERENCE))
    drill, _ = t.load_audio(data / "audio" / "drill.wav", 44100)
    report("sgsim", "front end (drill, worst value)", t.front_end_excess(t.LogMelFrontEnd(), drill, reference["drill_image"]))
    encoder = t.SgsimEncoder("resnet18")
    encoder.load_official(seeded_state_dict(encoder.state_dict(), int(reference["seed"])), source="seeded")
    encoder.eval()
    for name, expected in zip(reference["names"], reference["embeddings"]):
        waveform = t.reference_waveform(data, str(name))
        with torch.no_grad():
            ours = encoder(torch.from_numpy(waveform)[None])[0].numpy()
            report("sgsim", f"embedding {name}", relative_l2(ours, expected) / t.embedding_tolerance(encoder, waveform))
    if mistakes:
        front_end = t.LogMelFrontEnd()
        front_end.window = torch.hann_window(front_end.n_fft, periodic=False)
        report("sgsim", "symmetric window: front end", t.front_end_excess(front_end, drill, reference["drill_image"]))
        whole = t.reference_waveform(data, "raining+wind")
        start = (len(whole) - 864 * 512) // 2
        image = t.LogMelFrontEnd()(torch.from_numpy(whole)[None])[0, 0].numpy()
        report("sgsim", "crop before the dB step: front end", t.front_end_excess(t.LogMelFrontEnd(), whole[start : start + 864 * 512], image))


def upfirdn2d(mistakes: bool) -> None:
    """Worst output of every upfirdn2d case against its float64 bound; mistakes: a flipped filter, a gain off by 1e-6."""
    import test_upfirdn2d as t

    def excess(got: torch.Tensor, expected: np.ndarray, abs_sums: np.ndarray, taps: int) -> float:
        difference = np.abs(got.numpy() - expected)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.where(difference == 0, 0.0, difference / t.filter_error(abs_sums, taps, torch.float64)).max())

    torch.manual_seed(0)
    worst = max(excess(*t.run_case(torch.randn(2, 3, 7, 6, dtype=torch.float64), *case)) for case in t.CASES)
    report("upfirdn2d", "all cases (worst output)", worst)
    if mistakes:
        f, up, down, pad, flip, gain = t.CASES[1]
        x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
        _, expected, abs_sums, taps = t.run_case(x, *t.CASES[1])
        for label, wrong in (("flipped filter", (f, up, down, pad, not flip, gain)), ("gain off by 1e-6", (f, up, down, pad, flip, gain * (1 + 1e-6)))):
            report("upfirdn2d", label, excess(t.run_case(x, *wrong)[0], expected, abs_sums, taps))


FAMILIES = {"stylegan2": stylegan2, "identity": identity, "lpips": lpips, "sgsim": sgsim_encoder, "upfirdn2d": upfirdn2d}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("families", nargs="*", metavar="FAMILY", help=f"some of {', '.join(FAMILIES)} (default: all)")
    parser.add_argument("--mistakes", action="store_true", help="also the deliberately wrong implementations")
    args = parser.parse_args()
    if unknown := set(args.families) - set(FAMILIES):
        parser.error(f"unknown families {sorted(unknown)}: choose from {', '.join(FAMILIES)}")
    print("kernels:", {k: os.environ.get(k) for k in ("MKL_CBWR", "ATEN_CPU_CAPABILITY")}, torch.backends.cpu.get_cpu_capability())
    for family in args.families or FAMILIES:
        FAMILIES[family](args.mistakes)
