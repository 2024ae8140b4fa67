"""`sgsim study`: the A/B page made from output folders, answers read back, and the statistics of the tally."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from sgsim.cli import main
from sgsim.errors import SgsimError
from sgsim.evaluation.study import QUESTIONS, STUDY_RECORD, make_study, tally_study, wilson_interval

HOSTILE = "<img src=x onerror=alert(1)>"  # a target name that would run as HTML (no slash: it is a file name)


def write_edit(folder: Path, seed: int, targets: dict[str, float], shade: int) -> None:
    """An edit folder as sgsim writes it: run.json, source.png (the same pixels for the same seed) and <target>_s<strength>.png."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"sgsim": "0.1.0", "command": "edit"}))
    Image.fromarray(np.full((8, 8, 3), seed, np.uint8)).save(folder / "source.png")
    for target, strength in targets.items():
        Image.fromarray(np.full((8, 8, 3), shade, np.uint8)).save(folder / f"{target}_s{strength:g}.png")


@pytest.fixture
def conditions(tmp_path) -> list[tuple[str, Path]]:
    """Two conditions over seeds 0-4 with one shared sound; 'fire' and seed 9 exist in one condition only."""
    for label, shade in (("first", 100), ("second", 200)):
        for seed in range(5):
            write_edit(tmp_path / label / f"seed{seed}", seed, {"raining": 1, HOSTILE: 1}, shade + seed)
        write_edit(tmp_path / label / "seed9", 9 if label == "first" else 19, {"raining": 1}, shade)
    write_edit(tmp_path / "first" / "extra", 3, {"fire": 1}, 7)
    return [("first", tmp_path / "first"), ("second", tmp_path / "second")]


def answer_file(path: Path, study: dict, participant: str, prefers: str, keep: str = "same") -> Path:
    """A participant who prefers condition `prefers` on 'target' for every pair and answers `keep` on 'keep'."""
    answers = [{"pair": p["id"], "target": "A" if p["a_condition"] == prefers else "B", "keep": keep} for p in study["pairs"]]
    path.write_text(json.dumps({"study": study["study"], "participant": participant, "answers": answers}))
    return path


def test_wilson_interval_matches_the_closed_form_at_known_points():
    # Independent values: Wilson (1927) 95 % intervals as tabulated by Newcombe (1998), Stat. Med. 17, table I.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_pairs_match_source_target_and_strength_and_hide_which_condition_is_which(conditions, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    assert make_study(conditions, out, seed=3) == 10  # 5 seeds x 2 targets; seed 9's sources differ, 'fire' is single
    study = json.loads((out / STUDY_RECORD).read_text())
    for pair in study["pairs"]:
        a, b = (np.asarray(Image.open(out / pair[side])) for side in ("a", "b"))
        shade_a, shade_b = int(a[0, 0, 0]), int(b[0, 0, 0])
        seed = int(np.asarray(Image.open(out / pair["source"]))[0, 0, 0])
        assert {pair["a_condition"], pair["b_condition"]} == {"first", "second"}
        assert shade_a == (100 if pair["a_condition"] == "first" else 200) + seed  # the key names the right side
        assert shade_b == (100 if pair["b_condition"] == "first" else 200) + seed
    assert {p["a_condition"] for p in study["pairs"]} == {"first", "second"}  # sides are shuffled
    page = (out / "index.html").read_text()
    assert "a_condition" not in page and "first" not in page and "second" not in page  # the page carries no key
    assert HOSTILE not in page and page.count("</script>") == 2  # a hostile name cannot end the page's scripts
    assert all("first" not in p and "second" not in p for p in (str(f.relative_to(out)) for f in out.rglob("*.png")))


def test_the_tally_counts_preferences_with_an_exact_sign_test(conditions, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    make_study(conditions, out)
    study = json.loads((out / STUDY_RECORD).read_text())
    files = [answer_file(tmp_path / f"a{i}.json", study, f"p{i}", "second") for i in range(3)]
    results = tally_study(out, files)
    target = next(r for r in results.pairs if r.question == "target")
    keep = next(r for r in results.pairs if r.question == "keep")
    assert (target.first, target.second, target.first_wins, target.second_wins, target.ties) == ("first", "second", 0, 30, 0)
    assert target.preference == 0.0 and target.p_value == pytest.approx(2 * 0.5**30)
    assert keep.ties == 30 and keep.decided == 0 and math.isnan(keep.p_value)
    assert results.answers == 3 * 10 * len(QUESTIONS)


def _answers(key: dict, **changes) -> str:
    data = {"study": key["study"], "participant": "x", "answers": [{"pair": key["pairs"][0]["id"], "target": "A"}]}
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize("case", ["other study", "unknown pair", "pair twice", "bad answer", "not json", "too large", "no list"])
def test_a_bad_answer_file_is_one_line(conditions, tmp_path, case):
    out = tmp_path / "study"
    out.mkdir()
    make_study(conditions, out)
    study = json.loads((out / STUDY_RECORD).read_text())
    first = study["pairs"][0]["id"]
    text = {"other study": _answers(study, study="0" * 16),
            "unknown pair": _answers(study, answers=[{"pair": "p9999", "target": "A"}]),
            "pair twice": _answers(study, answers=[{"pair": first, "target": "A"}, {"pair": first, "target": "B"}]),
            "bad answer": _answers(study, answers=[{"pair": first, "target": "=HYPERLINK(1)"}]),
            "not json": "{",
            "too large": " " * (2 << 20),
            "no list": _answers(study, answers={"pair": first})}[case]
    path = tmp_path / "answers.json"
    path.write_text(text)
    with pytest.raises(SgsimError) as error:
        tally_study(out, [path])
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_participant_counted_twice_and_folders_without_edits_are_refused(conditions, tmp_path):
    out = tmp_path / "study"
    out.mkdir()
    make_study(conditions, out)
    study = json.loads((out / STUDY_RECORD).read_text())
    twice = [answer_file(tmp_path / f"{i}.json", study, "same person", "first") for i in range(2)]
    with pytest.raises(SgsimError, match="answered more than once"):
        tally_study(out, twice)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SgsimError, match="holds no edited images"):
        make_study([conditions[0], ("empty", tmp_path / "empty")], tmp_path / "s2")
    with pytest.raises(SgsimError, match="at least two conditions"):
        make_study(conditions[:1], tmp_path / "s3")


@pytest.fixture
def cli_edits(tiny_generator_file, encoder_checkpoint_file, tiny_clip_space, shared_data, tmp_path) -> list[Path]:
    """Two real `sgsim edit` runs of the same seeds and sound, 2 and 4 steps: the conditions a study compares."""
    folders = []
    for steps in ("2", "4"):
        for seed in ("1", "2"):
            folder = tmp_path / f"steps{steps}" / f"seed{seed}"
            result = CliRunner().invoke(main, ["edit", "--audio", str(shared_data / "audio" / "raining.wav"), "--seed", seed,
                                               "--out", str(folder), "--generator", str(tiny_generator_file),
                                               "--encoder-checkpoint", str(encoder_checkpoint_file), "--device", "cpu",
                                               "--steps", steps, "--strength", "0.5,1"], catch_exceptions=False)
            assert result.exit_code == 0, result.output
        folders.append(tmp_path / f"steps{steps}")
    return folders


def test_sgsim_study_end_to_end_in_a_browser(cli_edits, chromium, tmp_path, one_error_line):
    study = tmp_path / "study"
    result = CliRunner().invoke(main, ["study", f"short={cli_edits[0]}", f"long={cli_edits[1]}", "--out", str(study)])
    assert result.exit_code == 0, result.output
    key = json.loads((study / STUDY_RECORD).read_text())
    assert len(key["pairs"]) == 4 and all(p["audio"] for p in key["pairs"])  # 2 seeds x 2 strengths, the sound copied in
    page = chromium.new_page()
    page.goto((study / "index.html").as_uri())
    for pair in key["pairs"]:  # the visitor prefers 'long' on the target question and cannot tell on the other
        side = "A" if pair["a_condition"] == "long" else "B"
        page.locator(f'input[name="{pair["id"]}-target"][value="{side}"]').check()
        page.locator(f'input[name="{pair["id"]}-keep"][value="same"]').check()
    assert page.locator("#progress").text_content() == "4 of 4 blocks answered"
    assert page.evaluate("Array.from(document.images).every(img => img.complete && img.naturalWidth > 0)")
    page.fill("#participant", "visitor 1")
    with page.expect_download() as download:
        page.click("#save")
    answers = tmp_path / download.value.suggested_filename
    download.value.save_as(answers)
    page.close()
    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["study", "--tally", str(study), str(answers), "--out", str(report)])
    assert result.exit_code == 0, result.output
    rows = json.loads((report / "results.json").read_text())["rows"]
    target = next(row for row in rows if row["question"] == "target")
    assert (target["first"], target["first_wins"], target["second_wins"]) == ("short", 0, 4)
    assert (report / "results.csv").read_text().splitlines()[0].startswith("question,first,second")
    result = CliRunner().invoke(main, ["study", "--tally", str(study), str(study / "index.html"), "--out", str(tmp_path / "r2")])
    assert "not a readable answer file" in one_error_line(result) or "answers another study" in one_error_line(result)
    assert not (tmp_path / "r2").exists()
