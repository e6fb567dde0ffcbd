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
