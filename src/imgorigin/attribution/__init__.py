"""Open-set attribution, "which known generator made it, if any?": features → open-set classifier.

Frozen foundation-model features and a light classifier fitted on a few images per known source, with
"unknown" for sources never seen (Cioni et al., 2024).
"""

from imgorigin.attribution.openset import CLASSIFIERS, KNNClassifier, LinearProbe, OpenSetClassifier

__all__ = ["CLASSIFIERS", "KNNClassifier", "LinearProbe", "OpenSetClassifier"]
