"""vlalign.report.html: a self-contained report page, checked as text and as rendered by headless Chromium."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vlalign.report.html import SCROLL_ROWS, Figure, FigureRow, Section, Table, format_cell, render_page, write_page

try:
    from tests.chromium import chromium, render  # noqa: F401  (the fixture)
except ImportError:  # tests/ itself on sys.path
    from chromium import chromium, render  # noqa: F401

HOSTILE = "<script>alert(1)</script>"
RED_PX = 300  # side of the pure red square in the test figure, in pixels


def red_square_png(path: Path) -> Path:
    """A matplotlib (Agg) figure that is one pure red square of RED_PX x RED_PX pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig = plt.figure(figsize=(RED_PX / 100, RED_PX / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.add_patch(Rectangle((0, 0), 1, 1, facecolor=(1, 0, 0), edgecolor="none"))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_axis_off()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def small_plot_png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
    ax.plot([0, 1, 2, 3], [0.1, 0.4, 0.35, 0.8], marker="o", color="tab:blue")
    ax.set_title("CKA vs layer")
    fig.savefig(path)
    plt.close(fig)
    return path


ROWS = [
    ["clip-vit", 0.123456, 12, None, HOSTILE],
    ["a & b", 1.0, 0, 3.5e-5, 'say "hi" & <b>bye</b>'],
    ["dino", float("nan"), -3, 1234567.0, ""],
    ["minilm", 0.5, 7, -0.25, "plain"],
]


def make_page(tmp_path: Path) -> tuple[Path, list[Section]]:
    red = red_square_png(tmp_path / "red.png")
    plot = small_plot_png(tmp_path / "plot.png")
    sections = [
        Section("Scores <&>", [
            Table("Model scores", ["model", "cka", "n", "p <value>", "comment"], ROWS, note="p-values & <notes>"),
            "A paragraph with <tags> & ampersands.",
            Table("Empty", ["a", "b"], []),
        ], intro="Intro & <stuff>"),
        Section("Figures", [Figure("Red square", red, caption="pure red, 300 px"),
                            Figure("Line <plot>", plot)]),
    ]
    return write_page(tmp_path / "report.html", "Report <run>", sections,
                      meta={"run id": "r-123", "lake": "/tmp/lake & co", "generated at": "2025-01-01T00:00:00Z"}), sections


class Dom(HTMLParser):
    """Collects vl-tables (data-rows and counted body rows, cell texts), images and section ids."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self.imgs: list[dict] = []
        self.sections: list[str] = []
        self.figures = 0
        self._in_table = self._in_body = self._in_cell = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "table" and "vl-table" in classes:
            self.tables.append({"data_rows": int(a["data-rows"]), "rows": 0, "cells": []})
            self._in_table = True
        elif self._in_table and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.tables[-1]["rows"] += 1
            self.tables[-1]["cells"].append([])
        elif self._in_body and tag == "td":
            self._in_cell = True
            self.tables[-1]["cells"][-1].append("")
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "section" and "vl-section" in classes:
            self.sections.append(a.get("id"))
        elif tag == "figure" and "vl-figure" in classes:
            self.figures += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = self._in_body = False
        elif tag == "tbody":
            self._in_body = False
        elif tag == "td":
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.tables[-1]["cells"][-1][-1] += data


def parse(text: str) -> Dom:
    d = Dom()
    d.feed(text)
    d.close()
    return d


def test_page_text_is_self_contained_and_escaped(tmp_path):
    path, sections = make_page(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>")
    assert '<meta charset="utf-8">' in text
    low = text.lower()
    for bad in ('src="http', "src='http", "<link", "<script", "url(http", "@import"):
        assert bad not in low, bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a &amp; b" in text and "Report &lt;run&gt;" in text and "/tmp/lake &amp; co" in text
    d = parse(text)
    assert [t["data_rows"] for t in d.tables] == [len(ROWS), 0]
    assert [t["rows"] for t in d.tables] == [len(ROWS), 0]
    assert d.figures == 2 and len(d.imgs) == 2
    assert all(i["src"].startswith("data:image/png;base64,") for i in d.imgs)
    assert [i["alt"] for i in d.imgs] == ["Red square", "Line <plot>"]
    assert len(d.sections) == 2 and len(set(d.sections)) == 2
    for sid in d.sections:  # the table of contents links to every section
        assert f'href="#{sid}"' in text
    cells = d.tables[0]["cells"]
    assert cells[0] == ["clip-vit", "0.123", "12", "\u2014", HOSTILE]
    assert cells[1][1:4] == ["1.000", "0", "3.50e-05"]
    assert cells[2][1:4] == ["NaN", "-3", "1.23e+06"]
    # deterministic: the same input gives the same bytes
    assert render_page("Report <run>", sections, {"run id": "r-123", "lake": "/tmp/lake & co",
                                                  "generated at": "2025-01-01T00:00:00Z"}) == text
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # atomic write left nothing


def test_format_cell_and_model_errors(tmp_path):
    assert format_cell(3) == ("3", True)
    assert format_cell(True) == ("true", False)
    assert format_cell(0.98765) == ("0.988", True)
    assert format_cell(0.0) == ("0", True)
    assert format_cell(2500.5) == ("2500.5", True)
    assert format_cell("a<b") == ("a&lt;b", False)
    assert "vl-null" in format_cell(None)[0]
    with pytest.raises(FileNotFoundError, match="nope.png"):
        Figure("missing", tmp_path / "nope.png")
    with pytest.raises(ValueError, match="row 0"):
        Table("bad", ["a", "b"], [[1]])
    with pytest.raises(TypeError):
        Section("bad", [42])


def test_long_table_scrolls_and_ids_are_unique():
    rows = [[i, i / 1000] for i in range(SCROLL_ROWS + 50)]
    page = render_page("t", [Section("S", [Table("Big", ["i", "x"], rows), Table("Big", ["i", "x"], rows[:3])]),
                             Section("S", [])])
    d = parse(page)
    assert [t["rows"] for t in d.tables] == [SCROLL_ROWS + 50, 3]
    assert page.count("vl-scroll") == 2  # the CSS rule and the one long table
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)) == 4


def test_page_renders_in_chromium(tmp_path, chromium):  # noqa: F811
    from PIL import Image

    path, _ = make_page(tmp_path)
    dom, png = render(path, chromium)

    d = parse(dom)
    assert [(t["data_rows"], t["rows"]) for t in d.tables] == [(len(ROWS), len(ROWS)), (0, 0)]
    assert d.tables[0]["cells"][0][4] == HOSTILE  # shown as text, not run
    assert d.figures == 2 and len(d.imgs) == 2
    assert all(i["src"].startswith("data:image/png;base64,") for i in d.imgs)
    assert "<script" not in dom.lower()

    assert png.is_file() and png.stat().st_size > 10_000
    im = Image.open(png).convert("RGB")
    assert im.size == (1280, 2000)
    assert len(im.getcolors(maxcolors=1 << 20) or []) > 16  # not a blank page
    # the figure decoded: a solid red block of about RED_PX x RED_PX pixels is on screen
    px = im.load()
    w, h = im.size
    xs, ys, n = [], [], 0
    for y in range(0, h, 2):
        for x in range(0, w, 2):
            r, g, b = px[x, y]
            if r > 235 and g < 20 and b < 20:
                n += 1
                xs.append(x)
                ys.append(y)
    assert n * 4 > 0.85 * RED_PX * RED_PX, f"only {n * 4} red pixels"
    assert RED_PX - 10 <= max(xs) - min(xs) + 2 <= RED_PX + 10
    assert RED_PX - 10 <= max(ys) - min(ys) + 2 <= RED_PX + 10


def test_a_long_table_shows_its_first_rows_and_the_rest_a_click_away():
    rows = [[f"pair {i}", i / 100] for i in range(30)]
    sql = "select pair, x from t where run_id = 'it''s' and note = \"$x\""
    page = render_page("t", [Section("S", [Table("Long", ["pair", "x (%)"], rows, note="about the rows", top=10,
                                                 sql=sql),
                                           Table("Hidden", ["pair", "x (%)"], rows, top=0),
                                           Table("Short", ["pair", "x (%)"], rows[:12], top=10)])])
    d = parse(page)
    # the first 10 rows, the whole table in a <details>; the table without preview; the short table whole
    assert [t["rows"] for t in d.tables] == [10, 30, 30, 12]
    assert page.count("<details") == 2 and page.count("<summary>") == 2
    assert "Long (first 10 of 30 rows)" in page and "Show all 30 rows" in page and "Hidden: show all 30 rows" in page
    assert "<script" not in page.lower()
    # the query that gives the table, as a shell line: double quotes, $ and backslashes escaped
    assert ('vlalign query "select pair, x from t where run_id = &#x27;it&#x27;&#x27;s&#x27; and note = '
            '\\&quot;\\$x\\&quot;"') in page
    assert page.index("about the rows") < page.index("vl-sql\"") < page.index("<details")


def test_units_in_column_titles_decide_how_numbers_are_shown():
    page = render_page("t", [Section("S", [Table("Units", ["acc (%)", "chance (%)", "CKA (0-1)", "raw"],
                                                 [[0.153, 0.002, 8.5e-4, 8.5e-4], [1.0, None, -0.0021, 0.5]])])])
    cells = parse(page).tables[0]["cells"]
    assert cells[0] == ["15.3", "0.20", "0.001", "8.50e-04"]
    assert cells[1] == ["100.0", "\u2014", "-0.002", "0.500"]


def test_figures_in_a_row_and_cells_that_never_break_inside_a_word(tmp_path):
    plot = small_plot_png(tmp_path / "plot.png")
    page = render_page("t", [Section("S", [FigureRow([Figure("A", plot), Figure("B", plot)]),
                                           Table("T", ["name", "a long column title here", "note"],
                                                 [["efficientnet-lite1 x minilm-l6", 1, "word " * 20]])])])
    assert page.count('<div class="vl-row">') == 1 and parse(page).figures == 2
    assert '<th scope="col" class="num long">a long column title here</th>' in page
    assert '<td class="wrap">' in page and "overflow-wrap: anywhere" not in page.split("table.vl-table")[1]
