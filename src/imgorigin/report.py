"""HTML reports of verification runs: the operating point in words, a score plot, and one row per image.

The report is one self-contained HTML file (thumbnails and plots inlined as PNG data), so it can be mailed
or archived with the JSON-lines records it was made from. Open-set attribution evaluations get two PNG plots
(ROC with the operating point, confusion matrix) drawn from their metrics.
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


def roc_plot(path: str | Path, known_scores: np.ndarray, unknown_scores: np.ndarray, metrics: dict) -> None:
    """ROC of known vs unknown images with the decision's operating point (an open-set evaluation's metrics)."""
    from matplotlib.figure import Figure

    from imgorigin.metrics import roc_curve

    if metrics["mode"] == "features":
        threshold = -np.inf if metrics["threshold"] is None else metrics["threshold"]
        score_name, operating_point = metrics["classifier"]["rejection"], f"threshold {threshold:.3g}"
    else:
        score_name = "two-stage known-score"
        operating_point = f"two-stage decision, alpha {metrics['two_stage']['alpha']:g}"
    fpr, tpr, _ = roc_curve(known_scores, unknown_scores)
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, label=f"AUROC {metrics['auroc']:.3f}")
    axes.plot([0, 1], [0, 1], ":", color="grey")
    axes.plot([1 - metrics["unknown_rejected"]], [metrics["known_accepted"]], "o", label=operating_point)
    axes.set(
        xlabel="unknown images accepted (FPR)",
        ylabel="known images accepted (TPR)",
        title=f"known vs unknown ({score_name})",
    )
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def confusion_plot(path: str | Path, metrics: dict) -> None:
    """The open-set confusion matrix of an evaluation's metrics (rows: true class or 'unknown'), with counts."""
    from matplotlib.figure import Figure

    labels = metrics["confusion_matrix"]["labels"]
    matrix = np.array(metrics["confusion_matrix"]["rows_true_columns_predicted"])
    figure = Figure(figsize=(1.2 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(
            col, row, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black"
        )
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="true")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_open_set_plots(
    folder: str | Path, known_scores: np.ndarray, unknown_scores: np.ndarray, metrics: dict
) -> Path:
    """roc.png and confusion.png of an open-set evaluation in folder (matplotlib's Agg canvas, no display)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    roc_plot(folder / "roc.png", known_scores, unknown_scores, metrics)
    confusion_plot(folder / "confusion.png", metrics)
    return folder
