"""The verification HTML report at scale: long nested paths, relative names, sorting and filtering, context."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest

from imgorigin import __version__
from imgorigin.images import save_png
from imgorigin.report import common_folder, write_report
from imgorigin.verification.calibration import Calibration
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import decide

EVIL = '<script>alert(1)</script>" onmouseover="x'


@pytest.fixture
def cal():
    return Calibration(
        model_id="m",
        weight_hash="0" * 64,
        image_shape=(1, 8, 8),
        inversion=InversionConfig(),
        scores=np.linspace(1e-6, 3e-6, 99),
    )


@pytest.fixture
def page(tmp_path, cal):
    """A report of: a skip and an error (given first), a 300-character nested path, an image found in the top
    folder and a name holding markup, with a context whose value holds markup too."""
    top = tmp_path / "run"
    long_path = top / ("a" * 90) / ("b" * 90) / ("c" * 90) / "image.png"
    assert len(str(long_path.relative_to(top))) >= 280
    top.mkdir()
    save_png(np.full((8, 8), 0.5, dtype=np.float32), top / "x.png")
    records = [
        {"path": str(top / "notes" / ".hidden.png"), "skipped": "hidden", "detail": "the name starts with '.'"},
        {"path": str(top / "z.png"), "error": f"{top / 'z.png'}: not an image"},
        {"path": str(long_path), "score": 1e-2, **decide(1e-2, cal, 0.05)},
        {"path": str(top / "x.png"), "score": 2e-6, **decide(2e-6, cal, 0.05)},
        {"path": str(top / "sub" / f"{EVIL}.png"), "score": 2.5e-6, **decide(2.5e-6, cal, 0.05)},
    ]
    context = {"command": "imgorigin verify run/ --report r.html", "calibration": "cal.json <b>bold</b>"}
    out = write_report(tmp_path / "report.html", [("m", cal, records)], 0.05, context=context)
    return {"html": out.read_text(encoding="utf-8"), "top": top, "long": long_path, "records": records}


def rows(page: str) -> list[str]:
    return re.findall(r"<tr data-i=.*?</tr>", page, flags=re.S)


def test_rows_show_paths_relative_to_the_common_folder_with_the_full_path_on_hover(page):
    text, top, long_path = page["html"], page["top"], page["long"]
    relative = str(long_path.relative_to(top))
    assert f"Paths are relative to <code>{html.escape(str(top))}</code>" in text
    assert f'<td title="{html.escape(str(long_path))}">{html.escape(relative)}</td>' in text
    assert f'<td title="{html.escape(str(top / "x.png"))}">x.png</td>' in text
    assert len(rows(text)) == 5


def test_the_table_layout_is_fixed_and_long_names_wrap(page):
    text = page["html"]
    assert "table.records{table-layout:fixed;width:100%}" in text
    assert "overflow-wrap:anywhere" in text
    assert '<col style="width:105px">' in text  # the verdict column keeps its width


def test_results_come_first_then_errors_then_skips(page):
    verdicts = [re.search(r'data-verdict="([^"]*)"', row).group(1) for row in rows(page["html"])]
    assert verdicts == ["non-member", "member", "member", "error", "skipped"]
    assert [int(re.search(r'data-i="(\d+)"', row).group(1)) for row in rows(page["html"])] == list(range(5))
    skip = rows(page["html"])[-1]
    assert "hidden: the name starts with &#x27;.&#x27;" in skip and "notes/.hidden.png" in skip


def test_the_page_sorts_and_filters_with_inline_script_only(page):
    text = page["html"]
    for key in ("path", "verdict", "score", "p"):
        assert f'<th data-key="{key}"><button type="button"' in text
    for verdict, n in (("member", 2), ("non-member", 1), ("inconclusive", 0), ("error", 1), ("skipped", 1)):
        assert f'<input type="checkbox" value="{verdict}" checked> {verdict} ({n})' in text
    assert text.count("<script>") == 1 and 'addEventListener("click"' in text and "row.hidden" in text
    assert 'data-score="0.01"' in text and 'data-score=""' in text  # errors and skips have no score to sort by
    assert "http://" not in text and "https://" not in text and "<link" not in text  # one self-contained file
    assert "5 files: 2 member, 1 non-member, 0 inconclusive, 1 unreadable, 1 skipped." in text


def test_markup_in_names_and_context_is_escaped_in_text_and_attributes(page):
    text = page["html"]
    assert EVIL not in text and "<script>alert" not in text and "<b>bold" not in text
    assert html.escape(EVIL) in text  # cell text, title and data-path attributes
    assert 'title="' + html.escape(str(page["top"] / "sub" / EVIL)) + '.png"' in text
    assert "&quot; onmouseover=&quot;x" in text


def test_the_context_is_a_table_at_the_top_with_date_and_version(page, tmp_path, cal):
    text = page["html"]
    context = text[text.index('<table class="context">') : text.index("</table>")]
    assert text.index('<table class="context">') < text.index("<h2>")
    assert "<th>command</th><td>imgorigin verify run/ --report r.html</td>" in context
    assert "<th>calibration</th><td>cal.json &lt;b&gt;bold&lt;/b&gt;</td>" in context
    assert f"<th>imgorigin version</th><td>{html.escape(__version__)}</td>" in context
    assert re.search(r"<th>date</th><td>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d</td>", context)
    plain = write_report(tmp_path / "plain.html", [("m", cal, page["records"])], 0.05).read_text(encoding="utf-8")
    assert "<th>date</th>" in plain and "<th>imgorigin version</th>" in plain
    given = write_report(tmp_path / "g.html", [("m", cal, [])], 0.05, context={"date": "yesterday"}).read_text()
    assert "<th>date</th><td>yesterday</td>" in given and given.count("<th>date</th>") == 1


def test_common_folder():
    assert common_folder(["/a/b/c.png", "/a/b/d/e.png"]) == "/a/b"
    assert common_folder(["/a/b/c.png"]) == "/a/b"
    assert common_folder(["c.png", "d.png"]) == ""  # bare names: shown as given
    assert common_folder(["/a/c.png", "b/d.png"]) == ""  # absolute and relative mixed
    assert common_folder([]) == ""
