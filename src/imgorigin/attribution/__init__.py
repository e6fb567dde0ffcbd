"""Open-set attribution, "which known generator made it, if any?": features → open-set classifier → records.

Frozen foundation-model features and a light classifier fitted on a few images per known source, with
"unknown" for sources never seen (Cioni et al., 2024). :class:`Attributor` fits, saves, loads and attributes
image files; :mod:`imgorigin.attribution.evaluation` turns its answers into open-set metrics.
"""

from imgorigin.attribution.attributor import Attributor, class_folders
from imgorigin.attribution.openset import (
    CLASSIFIERS,
    ClassifierError,
    KNNClassifier,
    LinearProbe,
    OpenSetClassifier,
    TrainingInfo,
)
from imgorigin.attribution.spec import BackboneSpec

__all__ = [
    "CLASSIFIERS",
    "Attributor",
    "BackboneSpec",
    "ClassifierError",
    "KNNClassifier",
    "LinearProbe",
    "OpenSetClassifier",
    "TrainingInfo",
    "class_folders",
]
