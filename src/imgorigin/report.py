"""HTML reports of verification runs: the operating point in words, a score plot, and one row per image.

The report is one self-contained HTML file (thumbnails and plots inlined as PNG data), so it can be mailed
or archived with the JSON-lines records it was made from.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imgorigin.verification.calibration import Calibration

THUMB = 56


def _png_data(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _thumbnail(path: str) -> str:
    """An inline PNG thumbnail of an image file ('' when it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMB, THUMB))
            buffer = io.BytesIO()
            image.resize((THUMB, THUMB), Image.NEAREST).save(buffer, format="PNG")
    except OSError:
        return ""
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def score_plot(calibration: Calibration, records: Sequence[dict], alpha: float, title: str) -> str:
    """Histogram of the model's calibration scores, the α threshold, and each verified image as a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in records if "score" in r]
    values = np.array([r["score"] for r in scored] + calibration.scores.tolist())
    bins = np.logspace(np.log10(max(values.min(), 1e-12)), np.log10(values.max() * 1.01), 40)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(calibration.scores, bins=bins, color="#888", label=f"model's own images (n={calibration.scores.size})")
    threshold = calibration.threshold(alpha)
    if np.isfinite(threshold):
        ax.axvline(threshold, color="red", ls="--", label=f"threshold at α={alpha}")
    colours = {"member": "tab:green", "non-member": "tab:blue", "inconclusive": "tab:orange"}
    for verdict, colour in colours.items():
        xs = [r["score"] for r in scored if r["verdict"] == verdict]
        if xs:
            ax.plot(xs, np.zeros(len(xs)), "|", ms=22, mew=2, color=colour, label=f"verified: {verdict}")
    ax.set_xscale("log")
    ax.set_xlabel("best reconstruction distance (lower = easier for the model to reproduce)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    data = _png_data(fig)
    plt.close(fig)
    return data


def operating_point(calibration: Calibration, alpha: float) -> str:
    """The decision rule in words, with the error rates behind it."""
    n = calibration.scores.size
    text = (
        f"An image is judged a member when its conformal p-value against the model's own {n} calibration "
        f"images exceeds α = {alpha}: at most {alpha:.0%} of the model's own images are rejected "
        f"(threshold: score ≤ {calibration.threshold(alpha):.3g})."
    )
    if calibration.reference_scores is not None:
        ref = calibration.reference_scores
        wrongly = float(np.mean(ref <= calibration.threshold(alpha)))
        text += (
            f" On the reference real set ({calibration.reference_source}, n = {ref.size}), "
            f"{wrongly:.1%} of real images fall under that threshold; images that real images explain as "
            "well are reported as inconclusive."
        )
    else:
        text += (
            " No reference real images were given, so the rate at which real images are wrongly attributed "
            "is not bounded; pass --reference-real to bound it."
        )
    return text


def write_report(
    path: str | Path,
    sections: Sequence[tuple[str, Calibration, Sequence[dict]]],
    alpha: float,
    *,
    title: str = "imgorigin verification report",
    labels: dict[str, str] | None = None,
) -> Path:
    """Write one HTML file with a section per model: (model id, its calibration, its records)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;font-size:13px}.member{color:green}.non-member{color:#1f5fa8}"
        ".inconclusive{color:#c60}.error{color:#b00}</style>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for model, calibration, records in sections:
        counts = {v: sum(r.get("verdict") == v for r in records) for v in ("member", "non-member", "inconclusive")}
        errors = sum("error" in r for r in records)
        parts += [
            f"<h2>{html.escape(model)}</h2>",
            f"<p>{html.escape(operating_point(calibration, alpha))}</p>",
            f"<p>{len(records)} images: {counts['member']} member, {counts['non-member']} non-member, "
            f"{counts['inconclusive']} inconclusive, {errors} unreadable.</p>",
            f"<img src='{score_plot(calibration, records, alpha, model)}'>",
            "<table><tr><th></th><th>image</th>"
            + ("<th>source</th>" if labels else "")
            + "<th>verdict</th><th>score</th><th>p-value</th><th>p (Grubbs)</th><th>p (real)</th>"
            "<th>reasons</th></tr>",
        ]
        for r in records:
            name = html.escape(Path(r["path"]).name)
            source = f"<td>{html.escape(labels.get(r['path'], ''))}</td>" if labels else ""
            if "error" in r:
                parts.append(
                    f"<tr><td></td><td>{name}</td>{source}<td class='error' colspan=6>"
                    f"{html.escape(r['error'])}</td></tr>"
                )
                continue
            p_real = "–" if r.get("p_value_real") is None else f"{r['p_value_real']:.3f}"
            parts.append(
                f"<tr><td><img src='{_thumbnail(r['path'])}'></td><td>{name}</td>{source}"
                f"<td class='{r['verdict']}'>{r['verdict']}</td><td>{r['score']:.3g}</td>"
                f"<td>{r['p_value']:.3f}</td><td>{r['p_value_grubbs']:.3g}</td><td>{p_real}</td>"
                f"<td>{html.escape(', '.join(r['reasons']))}</td></tr>"
            )
        parts.append("</table>")
    path.write_text("\n".join(parts))
    return path
