"""Text augmentation of class labels (EDA-style: synonym replacement, random swap, random insertion), offline.

The SGSIM recipe (docs/reference.md#encoder-training) augments the label text before CLIP embeds it. The synonym
table is data; words it does not know are left alone, so a label without known words only gets swaps.
"""

from __future__ import annotations

import torch

# A small table of sound-related synonyms (hand-written; no WordNet download needed).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "dog": ("puppy", "hound"),
    "barking": ("woofing", "yapping"),
    "bark": ("woof", "yap"),
    "cat": ("kitten", "kitty"),
    "meowing": ("mewing",),
    "rain": ("rainfall", "downpour", "drizzle"),
    "raining": ("pouring", "drizzling"),
    "thunderstorm": ("storm", "thunder"),
    "wind": ("breeze", "gust", "gale"),
    "fire": ("flames", "blaze"),
    "crackling": ("crackle", "popping"),
    "water": ("stream", "liquid"),
    "sea": ("ocean",),
    "waves": ("surf", "breakers"),
    "baby": ("infant", "newborn"),
    "crying": ("weeping", "sobbing", "wailing"),
    "sobbing": ("crying", "weeping"),
    "laughing": ("giggling", "chuckling"),
    "giggling": ("laughing", "chuckling"),
    "person": ("human", "someone"),
    "people": ("persons", "crowd"),
    "man": ("male", "guy"),
    "woman": ("female", "lady"),
    "child": ("kid",),
    "children": ("kids",),
    "playing": ("performing",),
    "car": ("automobile", "vehicle"),
    "horn": ("honk", "hooter"),
    "engine": ("motor",),
    "idling": ("running",),
    "siren": ("alarm",),
    "drilling": ("boring",),
    "drill": ("borer",),
    "gun": ("firearm",),
    "shot": ("gunshot", "blast"),
    "explosion": ("blast", "detonation", "bang"),
    "bird": ("songbird",),
    "chirping": ("tweeting", "singing"),
    "birds": ("songbirds",),
    "clock": ("timepiece",),
    "ticking": ("tick", "tocking"),
    "bells": ("chimes",),
    "church": ("chapel",),
    "footsteps": ("steps", "footfalls"),
    "knocking": ("rapping", "tapping"),
    "door": ("doorway",),
    "music": ("melody", "tune"),
    "street": ("road",),
    "snoring": ("snore",),
    "coughing": ("cough",),
    "sneezing": ("sneeze",),
    "helicopter": ("chopper",),
    "airplane": ("aeroplane", "aircraft", "plane"),
    "train": ("railway",),
    "loud": ("noisy",),
    "quiet": ("soft", "faint"),
    "sound": ("noise", "audio"),
}


def _randint(high: int, generator: torch.Generator) -> int:
    """A uniform integer in [0, high) from `generator`."""
    return int(torch.randint(high, (1,), generator=generator))


def synonym_replacement(words: list[str], generator: torch.Generator) -> list[str]:
    """Replace one word that has synonyms by one of them."""
    candidates = [i for i, word in enumerate(words) if word.lower() in SYNONYMS]
    if not candidates:
        return words
    position = candidates[_randint(len(candidates), generator)]
    options = SYNONYMS[words[position].lower()]
    return words[:position] + [options[_randint(len(options), generator)]] + words[position + 1 :]


def random_swap(words: list[str], generator: torch.Generator) -> list[str]:
    """Swap two words at random positions."""
    if len(words) < 2:
        return words
    first, second = _randint(len(words), generator), _randint(len(words), generator)
    swapped = list(words)
    swapped[first], swapped[second] = swapped[second], swapped[first]
    return swapped


def random_insertion(words: list[str], generator: torch.Generator) -> list[str]:
    """Insert a synonym of one of the words at a random position."""
    candidates = [word for word in words if word.lower() in SYNONYMS]
    if not candidates:
        return words
    options = SYNONYMS[candidates[_randint(len(candidates), generator)].lower()]
    position = _randint(len(words) + 1, generator)
    return words[:position] + [options[_randint(len(options), generator)]] + words[position:]


OPERATIONS = (synonym_replacement, random_swap, random_insertion)


def augment_text(text: str, generator: torch.Generator, probability: float = 0.5) -> str:
    """With `probability`, apply one of the three operations, chosen uniformly; otherwise return `text` unchanged."""
    if float(torch.rand((), generator=generator)) >= probability:
        return text
    operation = OPERATIONS[_randint(len(OPERATIONS), generator)]
    return " ".join(operation(text.split(), generator))
