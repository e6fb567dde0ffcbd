"""JSON-lines records (resume, cut-off lines, non-finite numbers) and the HTML report."""

from __future__ import annotations

import json

import numpy as np

from imgorigin.images import save_png
from imgorigin.records import RecordWriter, read_done, read_records
from imgorigin.report import operating_point, write_report
from imgorigin.verification.calibration import Calibration
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import decide


def test_writer_resumes_and_ignores_a_cut_off_line(tmp_path):
    out = tmp_path / "r.jsonl"
    with RecordWriter(out) as w:
        w.write({"path": "a.png", "score": 1.0})
        w.write({"path": "b.png", "error": "b.png: truncated"})
        w.write({"path": "c.png", "score": float("inf")})
    with out.open("a") as f:
        f.write('{"path": "d.png", "sco')  # a run killed mid-line
    assert read_done(out) == {"a.png", "c.png"}  # the error is retried, the cut line ignored
    assert json.loads(out.read_text().splitlines()[2])["score"] is None  # inf: JSON has none, null instead
    writer = RecordWriter(out)
    assert writer.done == {"a.png", "c.png"} and writer.errors == 0
    writer.close()
    with RecordWriter(out, resume=False) as w:
        w.write({"path": "z.png", "score": 0.5})
    assert [r["path"] for r in read_records(out)] == ["z.png"]


def test_report_states_the_operating_point_and_lists_every_image(tmp_path):
    cal = Calibration(
        model_id="m",
        weight_hash="0" * 64,
        image_shape=(1, 8, 8),
        inversion=InversionConfig(),
        scores=np.linspace(1e-6, 3e-6, 99),
    )
    save_png(np.full((8, 8), 0.5, dtype=np.float32), tmp_path / "x.png")
    records = [
        {"path": str(tmp_path / "x.png"), "score": 2e-6, **decide(2e-6, cal, 0.05)},
        {"path": str(tmp_path / "y.png"), "score": 1e-2, **decide(1e-2, cal, 0.05)},
        {"path": str(tmp_path / "z.png"), "error": "z.png: not an image"},
    ]
    page = write_report(tmp_path / "report.html", [("m", cal, records)], 0.05).read_text()
    assert "1 member, 1 non-member, 0 inconclusive, 1 unreadable" in page
    assert "z.png: not an image" in page and page.count("data:image/png;base64,") >= 2
    text = operating_point(cal, 0.05)
    assert "99 calibration images" in text and "at most 5% of the model's own images" in text
    assert "not bounded" in text
    cal.reference_scores, cal.reference_source = np.linspace(1e-3, 1e-2, 50), "real/"
    assert "0.0% of real images fall under that threshold" in operating_point(cal, 0.05)
