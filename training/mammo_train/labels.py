"""The eight classes and the label spellings users have (same grammar as src/model/labels.rs)."""

import re

CLASSES = ["D1B", "D1M", "D2B", "D2M", "D3B", "D3M", "D4B", "D4M"]

_PATTERN = re.compile(r"^(?:density|d)([1-4])(b|benign|m|malignant)$")


class UnknownLabel(ValueError):
    """A label that names none of the eight classes."""


def parse_label(text: str) -> str:
    """`Density3Benign`, `D3B`, `Density3_Benign`, `density-3-malignant` → `D3B` / `D3M`."""
    folded = re.sub(r"[^0-9a-z]", "", text.lower())
    match = _PATTERN.match(folded)
    if not match:
        raise UnknownLabel(
            f"unknown class label {text!r}: expected D1B..D4M, Density1Benign..Density4Malignant "
            "or Density1_Benign-style names")
    return f"D{match.group(1)}{match.group(2)[0].upper()}"


def class_index(code: str) -> int:
    return CLASSES.index(code)


def density(code: str) -> int:
    """1..4"""
    return int(code[1])


def malignant(code: str) -> bool:
    return code[2] == "M"
