"""A user study of edits: a static page of randomised A/B pairs (which edit shows the sound better, which keeps the
source better) made from sgsim output folders, and the tally of the answer files it hands out, with confidence
intervals. Torch-free: it reads PNGs and run records only."""

from __future__ import annotations

import hashlib
import html
import json
import math
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from sgsim.errors import SgsimError
from sgsim.evaluation.folders import EditFolder, EditedImage, find_edit_folders
from sgsim.outputs import unique, write_csv, write_json, write_text

# (id, question shown above each pair): what the two radio groups of a pair ask.
QUESTIONS = (
    ("target", "Which image shows the sound (or text) better?"),
    ("keep", "Which image keeps the source (the person or the scene) better?"),
)
ANSWERS = ("A", "B", "same")
STUDY_RECORD = "study.json"  # the key: which condition stands behind each side of each pair (not read by the page)
PAGE = "index.html"
MAX_PAIRS = 200  # default number of pairs a study holds; a participant answers each once
MAX_ANSWER_BYTES = 1 << 20  # one participant's answer file: far above 200 pairs' worth
Z95 = 1.959963984540054  # two-sided 95 % normal quantile, for Wilson intervals


@dataclass
class PairResult:
    """Answers to one question for one pair of conditions: how often each side was preferred."""
    question: str
    first: str
    second: str
    first_wins: int = 0
    second_wins: int = 0
    ties: int = 0

    @property
    def decided(self) -> int:
        return self.first_wins + self.second_wins

    @property
    def preference(self) -> float:
        """Share of decided answers preferring `first` (NaN without any)."""
        return self.first_wins / self.decided if self.decided else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.first_wins, self.decided)

    @property
    def p_value(self) -> float:
        """Two-sided exact sign test of 'no preference' over the decided answers (ties left out)."""
        if not self.decided:
            return math.nan
        from scipy.stats import binomtest

        return float(binomtest(self.first_wins, self.decided, 0.5).pvalue)


@dataclass
class StudyResults:
    participants: list[str]
    answers: int
    pairs: list[PairResult] = field(default_factory=list)


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a binomial proportion: sensible at 0, 1 and small counts, unlike p ± z·se."""
    if trials == 0:
        return (math.nan, math.nan)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def parse_condition(text: str) -> tuple[str, Path]:
    """'LABEL=DIR' or 'DIR' (labelled with the folder's name)."""
    label, equals, path = text.partition("=")
    if not equals or not label or Path(text).exists():
        return Path(text).resolve().name or text, Path(text)
    return label, Path(path)


def _token(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def make_study(conditions: Sequence[tuple[str, Path]], out: Path, max_pairs: int = MAX_PAIRS, seed: int = 0) -> int:
    """Write a study into the (staged, empty) folder `out`: index.html, the images and sounds under anonymous names,
    and study.json, the key. Pairs compare two conditions' edits of the same source, target and strength, sides and
    order shuffled with `seed`. Returns the number of pairs."""
    if len(conditions) < 2:
        raise SgsimError("a study compares at least two conditions: pass two or more output folders ([LABEL=]DIR)")
    labels = unique(label for label, _ in conditions)
    edits: dict[str, dict[tuple[str, str, str], tuple[EditFolder, EditedImage]]] = {}
    for label, (_, folder) in zip(labels, conditions):
        if not folder.is_dir():
            raise SgsimError(f"{folder} is not a folder; pass sgsim output folders (edit, apply or batch runs)")
        found = find_edit_folders(folder)
        if not found:
            raise SgsimError(f"{folder} holds no edited images (source.png beside <target>_s<strength>.png and a run.json); "
                             f"pass folders written by sgsim edit, apply or batch")
        edits[label] = {(f.source_key, image.target, image.strength): (f, image) for f in found for image in f.images}
    rng = random.Random(seed)
    candidates = [(key, a, b) for i, a in enumerate(labels) for b in labels[i + 1:]
                  for key in sorted(edits[a].keys() & edits[b].keys())]
    if not candidates:
        raise SgsimError("no edit appears in two conditions (same source, target and strength); edit the same seeds or "
                         "photos with the same sounds and strengths in each folder")
    rng.shuffle(candidates)
    chosen = candidates[:max_pairs]
    copied: dict[Path, str] = {}

    def copy(path: Path, folder: str) -> str:
        if path not in copied:
            (out / folder).mkdir(exist_ok=True)
            copied[path] = f"{folder}/{_token(rng)}{path.suffix.lower()}"
            shutil.copyfile(path, out / copied[path])
        return copied[path]

    pairs, shown = [], []
    for number, (key, first, second) in enumerate(chosen):
        left, right = (first, second) if rng.random() < 0.5 else (second, first)
        (folder_a, a), (folder_b, b) = edits[left][key], edits[right][key]
        audio = folder_a.sound_for(a.target) or folder_b.sound_for(b.target)
        pair = {"id": f"p{number:04d}", "source": copy(folder_a.source, "images"), "a": copy(a.path, "images"),
                "b": copy(b.path, "images"), "audio": copy(audio, "audio") if audio else None,
                "target": key[1], "strength": key[2]}
        shown.append(pair)
        pairs.append({**pair, "a_condition": left, "b_condition": right, "source_sha256": key[0]})
    study_id = hashlib.sha256(json.dumps(pairs, sort_keys=True).encode()).hexdigest()[:16]
    write_json(out / STUDY_RECORD, {"study": study_id, "seed": seed, "conditions": dict(zip(labels, (str(c[1]) for c in conditions))),
                                    "questions": dict(QUESTIONS), "pairs": pairs})
    write_text(out / PAGE, study_page(study_id, shown))
    return len(pairs)


def study_page(study_id: str, pairs: Sequence[dict]) -> str:
    """The participant's page: every pair with its source, sound and two questions; answers are saved as a JSON file
    the participant sends back. Names reach the page as data, set with textContent, never as HTML."""
    data = json.dumps({"study": study_id, "questions": [list(q) for q in QUESTIONS], "answers": list(ANSWERS), "pairs": pairs})
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    template = (Path(__file__).with_name("study_page.html")).read_text(encoding="utf-8")
    return template.replace("{{TITLE}}", html.escape(f"sgsim study {study_id}")).replace("{{DATA}}", data)


def _read_answers(path: Path, study: dict) -> tuple[str, dict[str, dict[str, str]]]:
    """One participant's answer file, checked against the study: (participant, {pair id: {question: answer}})."""
    try:
        if path.stat().st_size > MAX_ANSWER_BYTES:
            raise SgsimError(f"{path} is larger than {MAX_ANSWER_BYTES} bytes; it is not an answer file of this study")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SgsimError(f"{path} is not a readable answer file ({type(exc).__name__}); pass the JSON files the study page saved") from None
    if not isinstance(data, dict) or data.get("study") != study["study"]:
        raise SgsimError(f"{path} answers another study (or none); pass the answer files saved from this study's page")
    participant, answers = data.get("participant"), data.get("answers")
    known = {pair["id"] for pair in study["pairs"]}
    if not isinstance(participant, str) or not isinstance(answers, list):
        raise SgsimError(f"{path} lacks 'participant' (text) or 'answers' (a list); pass the files the study page saved")
    chosen: dict[str, dict[str, str]] = {}
    for answer in answers:
        if not isinstance(answer, dict) or answer.get("pair") not in known:
            raise SgsimError(f"{path} answers a pair this study does not have; pass the files the study page saved")
        if answer["pair"] in chosen:
            raise SgsimError(f"{path} answers pair {answer['pair']} twice; keep one answer per pair")
        picked = {q: answer.get(q) for q, _ in QUESTIONS if answer.get(q) is not None}
        if any(value not in ANSWERS for value in picked.values()):
            raise SgsimError(f"{path}: pair {answer['pair']} has an answer other than {', '.join(ANSWERS)}")
        chosen[answer["pair"]] = picked
    return participant[:200], chosen


def tally_study(folder: Path, answer_files: Iterable[Path]) -> StudyResults:
    """Count every participant's answers per question and pair of conditions (in the study's condition order)."""
    try:
        study = json.loads((folder / STUDY_RECORD).read_text(encoding="utf-8"))
        labels = list(study["conditions"])
        pairs = {pair["id"]: pair for pair in study["pairs"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SgsimError(f"{folder} is not a study folder ({type(exc).__name__} reading {STUDY_RECORD}); "
                         f"pass the folder `sgsim study` wrote") from None
    order = {label: i for i, label in enumerate(labels)}
    results = {(q, a, b): PairResult(q, a, b) for q, _ in QUESTIONS for i, a in enumerate(labels) for b in labels[i + 1:]}
    participants, total = [], 0
    for path in answer_files:
        participant, chosen = _read_answers(Path(path), study)
        participants.append(participant)
        for pair_id, picked in chosen.items():
            pair = pairs[pair_id]
            first, second = sorted((pair["a_condition"], pair["b_condition"]), key=order.__getitem__)
            for question, value in picked.items():
                result = results[(question, first, second)]
                total += 1
                if value == "same":
                    result.ties += 1
                elif (pair["a_condition"] if value == "A" else pair["b_condition"]) == first:
                    result.first_wins += 1
                else:
                    result.second_wins += 1
    if not participants:
        raise SgsimError("no answer files given; pass the JSON files participants saved from the study page")
    repeated = [name for name, count in Counter(participants).items() if count > 1]
    if repeated:
        raise SgsimError(f"participant {repeated[0]!r} answered more than once; keep one answer file per participant")
    return StudyResults(participants, total, [r for r in results.values() if r.decided or r.ties])


def results_rows(results: StudyResults) -> list[dict]:
    """One row per question and pair of conditions: counts, preference for the first, its 95 % interval, the sign test."""
    rows = []
    for r in results.pairs:
        low, high = r.interval
        rows.append({"question": r.question, "first": r.first, "second": r.second, "first_wins": r.first_wins,
                     "second_wins": r.second_wins, "ties": r.ties, "preference_first": r.preference,
                     "ci95_low": low, "ci95_high": high, "p_value": r.p_value})
    return rows


def results_markdown(results: StudyResults) -> str:
    lines = [f"# User study: {len(results.participants)} participants, {results.answers} answers", "",
             "Preference = share of decided answers (ties left out) that chose the first condition; 95 % Wilson interval; "
             "p: two-sided exact sign test.", "",
             "| question | first | second | first wins | second wins | same | preference | 95 % interval | p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in results_rows(results):
        lines.append(f"| {row['question']} | {_cell(row['first'])} | {_cell(row['second'])} | {row['first_wins']} | "
                     f"{row['second_wins']} | {row['ties']} | {row['preference_first']:.3f} | "
                     f"{row['ci95_low']:.3f}-{row['ci95_high']:.3f} | {row['p_value']:.3g} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_results(folder: Path, results: StudyResults) -> list[str]:
    """results.md, results.csv and results.json in `folder`; returns their names."""
    rows = results_rows(results)
    write_text(folder / "results.md", results_markdown(results))
    write_csv(folder / "results.csv", rows)
    write_json(folder / "results.json", {"participants": results.participants, "answers": results.answers,
                                         "questions": dict(QUESTIONS),
                                         "rows": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                                                  for row in rows]})
    return ["results.md", "results.csv", "results.json"]
