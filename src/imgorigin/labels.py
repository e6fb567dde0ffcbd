"""The answers imgorigin gives, spelled once: verification verdicts and attribution labels."""

from __future__ import annotations

#: Verification verdicts.
MEMBER = "member"
NON_MEMBER = "non-member"
#: Verification (evidence fits both the model and real images) and two-stage attribution (conflicting evidence).
INCONCLUSIVE = "inconclusive"
#: Attribution: no known source made the image.
UNKNOWN = "unknown"
#: Attribution labels that answer "no known source": both count as rejected when measuring open-set attribution.
REJECTED = (UNKNOWN, INCONCLUSIVE)
#: The reason codes that make a verification verdict ``inconclusive``, and what each means.
INCONCLUSIVE_REASONS = {
    "too_little_information": "a nearly flat image: almost any generator reproduces it",
    "processing_not_calibrated": "the file shows processing (JPEG, lossy WebP, resized) the calibration's samples "
    "did not go through",
    "smoother_than_model": "less fine detail than the model's own images, as resizing down and back or blurring "
    "leaves (a low-passed member would be called non-member)",
    "overlaps_real_reference": "typical of both the model's images and the reference real images",
    "reference_set_too_small": "too few reference real images for their p-value to reach alpha",
}
