"""HTML reports of verification runs: the operating point in words, a score plot, and one row per image.

The report is one self-contained HTML file (thumbnails and plots inlined as PNG data), so it can be mailed
or archived with the JSON-lines records it was made from. Open-set attribution evaluations get two PNG plots
(ROC with the operating point, confusion matrix) drawn from their metrics.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
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

    scored = [r for r in records if "verdict" in r and _number(r.get("score"), "g")[1]]
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


VERDICTS = ("member", "non-member", "inconclusive", "error", "skipped")

STYLE = """
body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}
table{border-collapse:collapse}
td,th{padding:2px 8px;border-bottom:1px solid #ddd;font-size:13px;text-align:left;vertical-align:top}
table.records{table-layout:fixed;width:100%}
table.records td,table.context td,.folder{overflow-wrap:anywhere;word-break:break-word}
table.context{table-layout:fixed;width:100%;margin-bottom:1em}
table.context th{width:11em;color:#555;font-weight:normal}
th button{font:inherit;font-weight:bold;border:0;background:none;padding:0;cursor:pointer}
th[data-key]:not([aria-sort]) button::after{content:" \\21C5";color:#aaa}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
.filters label{margin-right:1em;font-size:13px}
.member{color:green}.non-member{color:#1f5fa8}.inconclusive{color:#c60}.error{color:#b00}.skipped{color:#777}
"""

# Sorting (click a column header; again to reverse) and filtering by verdict, per section; no external files.
SCRIPT = """
document.querySelectorAll("section.model").forEach(function (section) {
  var table = section.querySelector("table.records"), body = table.tBodies[0];
  var rank = {"member": 0, "non-member": 1, "inconclusive": 2, "error": 3, "skipped": 4};
  function key(row, name) {
    var v = row.dataset[name];
    if (name === "verdict") return rank[v];
    if (name === "path") return v;
    return v === "" ? null : parseFloat(v);
  }
  table.querySelectorAll("th[data-key] button").forEach(function (button) {
    button.addEventListener("click", function () {
      var th = button.parentNode, name = th.dataset.key;
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      table.querySelectorAll("th[data-key]").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, name), y = key(b, name), order = a.dataset.i - b.dataset.i;
        if (x === null || y === null) return (x === null) - (y === null) || order;  /* no number: last */
        var c = name === "path" ? x.localeCompare(y, undefined, {numeric: true}) : (x > y) - (x < y);
        return c * dir || order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
  section.querySelectorAll(".filters input").forEach(function (box) {
    box.addEventListener("change", function () {
      Array.prototype.forEach.call(body.rows, function (row) {
        if (row.dataset.verdict === box.value) row.hidden = !box.checked;
      });
    });
  });
});
"""


def default_context() -> dict[str, str]:
    """What every report records about its making: the date (local time, with its UTC offset) and the version."""
    from imgorigin.version import __version__

    return {"date": datetime.now().astimezone().isoformat(timespec="seconds"), "imgorigin version": __version__}


def _number(value, spec: str) -> tuple[str, str]:
    """(shown text, sort key) of a number in a record; a missing or non-finite one is shown as a dash, sorts last."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "–", ""
    return format(value, spec), repr(float(value))


def _verdict(record: dict) -> str:
    if "error" in record:
        return "error"
    if "skipped" in record:
        return "skipped"
    return str(record.get("verdict", "error"))


def common_folder(paths: Sequence[str]) -> str:
    """The deepest folder holding every path ('' when there is none: bare names, or absolute and relative mixed)."""
    try:
        return os.path.commonpath([os.path.dirname(os.path.normpath(p)) for p in paths]) if paths else ""
    except ValueError:
        return ""


def _shown_path(path: str, folder: str) -> str:
    return os.path.relpath(os.path.normpath(path), folder) if folder else path


def _context_table(context: Mapping[str, str] | None) -> str:
    """The table at the top: what produced the report (the date and the version unless the context gives them)."""
    entries = {**default_context(), **(context or {})}
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in entries.items())
    return f'<table class="context"><caption hidden>What produced this report</caption>{rows}</table>'


def _records_table(records: Sequence[dict], labels: dict[str, str] | None) -> list[str]:
    """A section's table: results first (in the order given), then errors, then skipped inputs."""
    folder = common_folder([str(r["path"]) for r in records])
    widths = ["64px", None] + (["90px"] if labels else []) + ["105px", "80px", "90px", "80px", "65px", "170px"]
    columns = "".join(f'<col style="width:{w}">' if w else "<col>" for w in widths)

    def sortable(key: str, text: str) -> str:
        return f'<th data-key="{key}"><button type="button" title="sort by {text}">{text}</button></th>'

    parts = [
        f'<p class="folder">Paths are relative to <code>{html.escape(folder)}</code></p>' if folder else "",
        '<table class="records"><colgroup>'
        + columns
        + "</colgroup><thead><tr><th></th>"
        + sortable("path", "image")
        + ("<th>source</th>" if labels else "")
        + sortable("verdict", "verdict")
        + sortable("score", "score")
        + sortable("p", "p-value")
        + "<th>p (Grubbs)</th><th>p (real)</th><th>reasons</th></tr></thead><tbody>",
    ]
    rank = {"error": 1, "skipped": 2}
    ordered = sorted(records, key=lambda r: rank.get(_verdict(r), 0))  # stable: results keep their order
    for i, r in enumerate(ordered):
        full, verdict = str(r["path"]), _verdict(r)
        shown = _shown_path(full, folder)
        score, score_key = _number(r.get("score"), ".3g")
        p_value, p_key = _number(r.get("p_value"), ".3f")
        attributes = (
            f'data-i="{i}" data-path="{html.escape(shown)}" data-verdict="{html.escape(verdict)}" '
            f'data-score="{score_key}" data-p="{p_key}"'
        )
        name = f'<td title="{html.escape(full)}">{html.escape(shown)}</td>'
        source = f"<td>{html.escape(labels.get(full, ''))}</td>" if labels else ""
        if verdict in ("error", "skipped"):
            detail = r["error"] if verdict == "error" else f"{r['skipped']}: {r.get('detail', '')}"
            parts.append(
                f'<tr {attributes}><td></td>{name}{source}<td class="{verdict}">{verdict}</td>'
                f'<td colspan="5" class="{verdict}">{html.escape(str(detail))}</td></tr>'
            )
            continue
        thumbnail = _thumbnail(full)
        image = f'<img src="{thumbnail}" alt="">' if thumbnail else ""
        grubbs = _number(r.get("p_value_grubbs"), ".3g")[0]
        p_real = _number(r.get("p_value_real"), ".3f")[0]
        reasons = html.escape(", ".join(map(str, r.get("reasons", ()))))
        parts.append(
            f"<tr {attributes}><td>{image}</td>{name}{source}"
            f'<td class="{html.escape(verdict)}">{html.escape(verdict)}</td><td>{score}</td>'
            f"<td>{p_value}</td><td>{grubbs}</td><td>{p_real}</td><td>{reasons}</td></tr>"
        )
    parts.append("</tbody></table>")
    return parts


def write_report(
    path: str | Path,
    sections: Sequence[tuple[str, Calibration, Sequence[dict]]],
    alpha: float,
    *,
    title: str = "imgorigin verification report",
    labels: dict[str, str] | None = None,
    context: Mapping[str, str] | None = None,
) -> Path:
    """Write one self-contained HTML file with a section per model: (model id, its calibration, its records).

    Records are results, errors ``{"path", "error"}`` or skipped inputs ``{"path", "skipped", "detail"}``; each
    section lists them in a table (results first, then errors, then skips) with paths relative to the folder
    holding them all (the full path shows on hover), which sorts by a click on a column header and filters by
    verdict. ``context`` (e.g. command line, model, calibration file and digest) is shown as a table at the top,
    after the date and the imgorigin version, which are filled in unless given (keys "date", "imgorigin version").
    ``labels`` maps a record's path to a "source" column.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        f"<h1>{html.escape(title)}</h1>",
        _context_table(context),
    ]
    for model, calibration, records in sections:
        counts = {v: sum(_verdict(r) == v for r in records) for v in VERDICTS}
        filters = "".join(
            f'<label class="{v}"><input type="checkbox" value="{v}" checked> {v} ({counts[v]})</label>'
            for v in VERDICTS
        )
        parts += [
            f'<section class="model"><h2>{html.escape(model)}</h2>',
            f"<p>{html.escape(operating_point(calibration, alpha))}</p>",
            f"<p>{len(records)} files: {counts['member']} member, {counts['non-member']} non-member, "
            f"{counts['inconclusive']} inconclusive, {counts['error']} unreadable, {counts['skipped']} skipped.</p>",
            f'<img src="{score_plot(calibration, records, alpha, model)}" alt="score plot">',
            f'<p class="filters">Show: {filters}</p>',
            *_records_table(records, labels),
            "</section>",
        ]
    parts.append(f"<script>{SCRIPT}</script></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
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
