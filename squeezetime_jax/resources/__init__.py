"""Data files shipped with the package."""

from __future__ import annotations

from importlib import resources

KINETICS400_CLASSES_FILE = "kinetics400_classes.txt"


def kinetics400_class_names() -> list[str]:
    """The 400 Kinetics-400 class names in the order of the released label map
    (alphabetical; index i is logit i of a released K400 checkpoint)."""
    text = resources.files(__name__).joinpath(KINETICS400_CLASSES_FILE).read_text("utf-8")
    return [line for line in text.splitlines() if line]
