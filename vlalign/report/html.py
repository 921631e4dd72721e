"""A tiny document model and renderer for self-contained HTML reports (standard library only).

A page is a list of :class:`Section`; a section holds :class:`Table`, :class:`Figure`, :class:`FigureRow`
(figures side by side) and plain strings (paragraphs). :func:`render_page` turns them into ONE HTML5 document
with everything inline: the CSS in a ``<style>`` element, every image as a ``data:`` URI. No external file, no
network, no JavaScript.

A table's unit is in its column titles: a column titled ``... (%)`` holds fractions and shows them as
percentages, one titled ``... (0-1)`` holds scores and shows them with 3 decimals. A long table can show its
first rows only, with the whole table in a ``<details>`` element (one click, no script), and the
``vlalign query`` line that gives it.

Hooks for checking the page (tests, scripts): every table is ``<table class="vl-table" data-rows="N">``
(N = rows in its ``<tbody>``), every figure ``<figure class="vl-figure">`` and every section
``<section class="vl-section" id="...">``. The output depends only on the input: the same sections and
meta give the same bytes (no timestamp unless one is passed in ``meta``).
"""

from __future__ import annotations

import base64
import html as _html
import math
import numbers
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

__all__ = ["Table", "Figure", "FigureRow", "Section", "render_page", "write_page", "format_cell", "SCROLL_ROWS"]

#: Tables with more rows than this are rendered in full, inside a scrollable box.
SCROLL_ROWS = 200

#: How a column's title names the unit of its numbers, and how they are shown (see format_cell's ``kind``).
UNIT_KINDS = {"(%)": "pct", "(0-1)": "score"}

#: A text column whose longest cell is longer than this may wrap (between words); the others never wrap.
WRAP_CHARS = 40
#: A column title longer than this may wrap between its words (a wide table stays narrow); shorter ones never do.
LONG_TITLE = 16

NULL_HTML = '<span class="vl-null" title="NULL">\u2014</span>'


def _esc(text: object) -> str:
    return _html.escape(str(text), quote=True)


def pct_decimals(values: Iterable[object]) -> int:
    """How many decimals a column of fractions shown in % needs: 2 when one is below 1% (a chance level of 0.002
    is 0.20), else 1; the same for the whole column."""
    small = any(isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < abs(100 * float(v)) < 1
                for v in values)
    return 2 if small else 1


def unit_kind(title: str) -> str | None:
    """The kind of numbers a column holds, from the unit its title ends with (UNIT_KINDS), else None."""
    return next((kind for unit, kind in UNIT_KINDS.items() if title.endswith(unit)), None)


def format_cell(value: object, kind: str | None = None) -> tuple[str, bool]:
    """``(html, numeric)`` for one table cell: the escaped, formatted text and whether it is a number.

    None -> a greyed em dash (``title="NULL"``); bool -> ``true``/``false``; ints as ints;
    floats with 3 decimals when ``|x| < 1000`` (scores, CKA values, accuracies), 1 decimal up to 1e6,
    3 significant digits in scientific notation beyond, and for tiny non-zero values (``|x| < 1e-3``);
    NaN and infinities spelled out. Anything else is ``str()``-ed and escaped. A float of ``kind`` "pct"
    (a fraction) is shown as a percentage without the sign, 1 decimal ("pct2": 2), of ``kind`` "score" with 3
    decimals always."""
    if kind is not None and isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and math.isfinite(float(value)):
        x = float(value)
        return (f"{x:.3f}" if kind == "score" else f"{100 * x:.{2 if kind == 'pct2' else 1}f}"), True
    if value is None:
        return NULL_HTML, False
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        return ("true" if value else "false"), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isnan(x):
            return '<span class="vl-null">NaN</span>', True
        if math.isinf(x):
            return ("\u221e" if x > 0 else "\u2212\u221e"), True
        a = abs(x)
        if x == 0:
            text = "0"
        elif a < 1e-3 or a >= 1e6:
            text = f"{x:.3g}" if a >= 1e-3 else f"{x:.2e}"
        elif a < 1000:
            text = f"{x:.3f}"
        else:
            text = f"{x:.1f}"
        return text, True
    return _esc(value), False


def _slug(text: str, default: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or default


class _Ids:
    """Hands out unique HTML ids, in document order (so output stays deterministic)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, wanted: str) -> str:
        cand, k = wanted, 2
        while cand in self.used:
            cand = f"{wanted}-{k}"
            k += 1
        self.used.add(cand)
        return cand


@dataclass
class Table:
    """A titled table. ``rows`` are sequences as long as ``columns``; ``note`` goes under it. With ``top``, a
    table of more than ``top + 2`` rows shows its first ``top`` rows (``top`` 0: none) and the whole table one
    click away (in a ``<details>`` element); ``sql``, a query that gives the whole table, is shown under it."""

    title: str
    columns: Sequence[str]
    rows: Iterable[Sequence[object]]
    note: str = ""
    table_id: str | None = None
    top: int | None = None
    sql: str = ""

    def __post_init__(self) -> None:
        self.columns = [str(c) for c in self.columns]
        self.rows = [tuple(r) for r in self.rows]
        n = len(self.columns)
        for i, r in enumerate(self.rows):
            if len(r) != n:
                raise ValueError(f"table {self.title!r}: row {i} has {len(r)} cells, expected {n} ({self.columns})")

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def collapsed(self) -> bool:
        """Whether only the first ``top`` rows are shown, the rest a click away."""
        return self.top is not None and self.n_rows > self.top + 2

    def render(self, ids: _Ids | None = None) -> str:
        ids = ids or _Ids()
        kinds = [unit_kind(c) for c in self.columns]
        kinds = [k + "2" if k == "pct" and pct_decimals(r[j] for r in self.rows) == 2 else k
                 for j, k in enumerate(kinds)]
        cells = [[format_cell(v, k) for v, k in zip(r, kinds)] for r in self.rows]
        numeric = [bool(cells) and all(row[j][1] or r[j] is None for row, r in zip(cells, self.rows))
                   for j in range(len(self.columns))]
        wrap = [not numeric[j] and any(len(str(r[j])) > WRAP_CHARS for r in self.rows if r[j] is not None)
                for j in range(len(self.columns))]
        cls = ["num" if numeric[j] else "wrap" if wrap[j] else "" for j in range(len(self.columns))]
        tid = ids.take(self.table_id or "table-" + _slug(self.title, "untitled"))
        out = []
        if not self.collapsed:
            out.append(self._html(tid, cells, cls, self.title))
        elif self.top:
            caption = f"{self.title} (first {self.top} of {self.n_rows} rows)"
            out.append(self._html(tid, cells[: self.top], cls, caption))
        if not self.rows:
            out.append('<p class="vl-empty">(no rows)</p>')
        note = f'<p class="vl-note">{_esc(self.note)}</p>' if self.note else ""
        if note and (self.top or not self.collapsed):
            out.append(note)
        if self.sql:
            out.append(_sql_line(self.sql))
        if self.collapsed:
            what = "Show all" if self.top else f"{_esc(self.title)}: show all"
            out.append(f'<details class="vl-more"><summary>{what} {self.n_rows} rows</summary>')
            out.append(self._html(ids.take(tid + "-all") if self.top else tid, cells, cls, self.title))
            if not self.top:
                out.append(note)  # about the rows, shown with them
            out.append("</details>")
        return "\n".join(out)

    def _html(self, tid: str, cells: list, cls: list[str], caption: str) -> str:
        scroll = len(cells) > SCROLL_ROWS
        out = [f'<div class="vl-table-wrap{" vl-scroll" if scroll else ""}">',
               f'<table class="vl-table" id="{_esc(tid)}" data-rows="{len(cells)}">',
               f"<caption>{_esc(caption)}</caption>"]
        head = "".join(_th(t, c) for t, c in zip(self.columns, cls))
        out.append(f"<thead><tr>{head}</tr></thead>")
        out.append("<tbody>")
        for row in cells:
            out.append("<tr>" + "".join(f"<td{_cls(c)}>{text}</td>" for (text, _), c in zip(row, cls)) + "</tr>")
        out.append("</tbody></table></div>")
        return "\n".join(out)


def _cls(c: str) -> str:
    return f' class="{c}"' if c else ""


def _th(title: str, c: str) -> str:
    """A column's title cell: its column's class, and 'long' (may wrap between words) past LONG_TITLE."""
    classes = " ".join(x for x in (c, "long" if len(title) > LONG_TITLE else "") if x)
    return f'<th scope="col"{_cls(classes)}>{_esc(title)}</th>'


def _sql_line(sql: str) -> str:
    """The shell line that gives a table: vlalign query "<sql>" (the SQL escaped for double quotes)."""
    quoted = re.sub(r'([\\"$`])', r"\\\1", " ".join(sql.split()))
    return f'<p class="vl-sql">Whole table: <code>vlalign query "{_esc(quoted)}"</code></p>'


_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
]


def _mime(path: Path, data: bytes) -> str:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if path.suffix.lower() == ".svg":
        return "image/svg+xml"
    raise ValueError(f"{path}: not a PNG/JPEG/GIF/WebP/SVG image")


@dataclass
class Figure:
    """An image file (normally a PNG written by matplotlib) embedded in the page as a data URI."""

    title: str
    png_path: Union[str, Path]
    caption: str = ""

    def __post_init__(self) -> None:
        self.png_path = Path(self.png_path)
        if not self.png_path.is_file():
            raise FileNotFoundError(f"figure {self.title!r}: image file not found: {self.png_path}")

    def render(self, ids: _Ids | None = None) -> str:
        path = Path(self.png_path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"figure {self.title!r}: image file not found: {path}") from None
        uri = f"data:{_mime(path, data)};base64," + base64.b64encode(data).decode("ascii")
        ids = ids or _Ids()
        fid = ids.take("figure-" + _slug(self.title, "untitled"))
        cap = f"<strong>{_esc(self.title)}</strong>"
        if self.caption:
            cap += f" \u2014 {_esc(self.caption)}"
        return (f'<figure class="vl-figure" id="{_esc(fid)}">\n<img src="{uri}" alt="{_esc(self.title)}">\n'
                f"<figcaption>{cap}</figcaption>\n</figure>")


@dataclass
class FigureRow:
    """Figures side by side (as many as fit the page's width; the next ones on the line below)."""

    figures: list[Figure]

    def render(self, ids: _Ids | None = None) -> str:
        ids = ids or _Ids()
        return '<div class="vl-row">\n' + "\n".join(f.render(ids) for f in self.figures) + "\n</div>"


Item = Union[Table, Figure, FigureRow, str]


@dataclass
class Section:
    """A titled part of the page: an optional intro paragraph, then tables, figures and paragraphs."""

    title: str
    items: list[Item] = field(default_factory=list)
    intro: str = ""

    def __post_init__(self) -> None:
        self.items = list(self.items)
        for it in self.items:
            if not isinstance(it, (Table, Figure, FigureRow, str)):
                raise TypeError(f"section {self.title!r}: items are Table, Figure, FigureRow or str, got "
                                f"{type(it).__name__}")


CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1d2329;
       background: #fff; margin: 0; padding: 0 1.5rem 3rem; max-width: 1400px; }
header.vl-header { border-bottom: 2px solid #2b5797; padding: 1.2rem 0 .6rem; margin-bottom: 1rem; }
header.vl-header h1 { margin: 0 0 .4rem; font-size: 1.6rem; }
dl.vl-meta { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: 0;
             font-size: .9rem; color: #46505a; }
dl.vl-meta dt { font-weight: 600; white-space: nowrap; }
dl.vl-meta dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
nav.vl-toc { background: #f4f6f9; border: 1px solid #dde3ea; border-radius: 6px; padding: .4rem 1rem;
             margin-bottom: 1.5rem; }
nav.vl-toc h2 { font-size: 1rem; margin: 0 1rem 0 0; display: inline; }
nav.vl-toc ol { display: inline; margin: 0; padding: 0; list-style: none; }
nav.vl-toc li { display: inline-block; margin-right: 1.1rem; white-space: nowrap; }
nav.vl-toc a { color: #2b5797; text-decoration: none; }
section.vl-section { margin: 0 0 2rem; }
section.vl-section > h2 { font-size: 1.3rem; border-bottom: 1px solid #dde3ea; padding-bottom: .2rem; }
p.vl-intro { color: #34404b; }
.vl-table-wrap { overflow-x: auto; max-width: 100%; margin: .8rem 0 .3rem; }
.vl-table-wrap.vl-scroll { max-height: 36rem; overflow-y: auto; border: 1px solid #dde3ea; }
table.vl-table { border-collapse: collapse; font-size: .88rem; min-width: 20rem; }
table.vl-table caption { caption-side: top; text-align: left; font-weight: 600; padding: .2rem 0 .4rem;
                         white-space: nowrap; }
table.vl-table th, table.vl-table td { border-bottom: 1px solid #e3e8ee; padding: .2rem .6rem; text-align: left;
                                       vertical-align: top; white-space: nowrap; }
table.vl-table th { vertical-align: bottom; }
table.vl-table th.long { white-space: normal; min-width: 5rem; }
table.vl-table td.wrap { white-space: normal; min-width: 22rem; overflow-wrap: break-word; }
table.vl-table thead th { background: #eef2f7; border-bottom: 2px solid #c5cfdb; position: sticky; top: 0; }
table.vl-table tbody tr:nth-child(even) { background: #fafbfc; }
table.vl-table .num { text-align: right; font-variant-numeric: tabular-nums; }
.vl-null { color: #9aa4ae; }
p.vl-note, p.vl-empty { font-size: .85rem; color: #5c6670; margin: .2rem 0 1rem; }
p.vl-sql { font-size: .8rem; color: #5c6670; margin: .1rem 0 .3rem; white-space: nowrap; overflow-x: auto; }
p.vl-sql code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; color: #34404b; }
details.vl-more { margin: 0 0 .6rem; }
details.vl-more > summary { cursor: pointer; color: #2b5797; font-size: .88rem; }
.vl-row { display: flex; flex-wrap: wrap; gap: 0 1rem; align-items: flex-start; }
.vl-row figure.vl-figure { margin: .6rem 0; display: table; }
.vl-row figure.vl-figure figcaption { display: table-caption; caption-side: bottom; }
figure.vl-figure { margin: 1rem 0; max-width: 100%; }
figure.vl-figure img { max-width: 100%; height: auto; display: block; border: 1px solid #e3e8ee; }
figure.vl-figure figcaption { font-size: .88rem; color: #46505a; margin-top: .3rem; }
"""


def render_page(title: str, sections: Sequence[Section], meta: Mapping[str, object] | None = None) -> str:
    """A complete, self-contained HTML5 document: header (title and ``meta`` key/values, in the given
    order), a table of contents linking to each section, then the sections."""
    ids = _Ids()
    sec_ids = [ids.take("sec-" + _slug(s.title, str(i + 1))) for i, s in enumerate(sections)]
    out = ["<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           '<header class="vl-header">', f"<h1>{_esc(title)}</h1>"]
    if meta:
        out.append('<dl class="vl-meta">')
        for k, v in meta.items():
            out.append(f"<dt>{_esc(k)}</dt><dd>{NULL_HTML if v is None else _esc(v)}</dd>")
        out.append("</dl>")
    out.append("</header>")
    if sections:
        out.append('<nav class="vl-toc"><h2>Contents</h2><ol>')
        out.extend(f'<li><a href="#{sid}">{_esc(s.title)}</a></li>' for s, sid in zip(sections, sec_ids))
        out.append("</ol></nav>")
    out.append("<main>")
    for s, sid in zip(sections, sec_ids):
        out.append(f'<section class="vl-section" id="{sid}">')
        out.append(f"<h2>{_esc(s.title)}</h2>")
        if s.intro:
            out.append(f'<p class="vl-intro">{_esc(s.intro)}</p>')
        for it in s.items:
            if isinstance(it, str):
                out.append(f"<p>{_esc(it)}</p>")
            else:
                out.append(it.render(ids))
        out.append("</section>")
    out += ["</main>", "</body>", "</html>", ""]
    return "\n".join(out)


def write_page(path: Union[str, Path], title: str, sections: Sequence[Section],
               meta: Mapping[str, object] | None = None) -> Path:
    """Render the page and write it to ``path`` atomically (temp file in the same folder, then
    ``os.replace``): a reader never sees a half-written report. Returns the path."""
    path = Path(path)
    text = render_page(title, sections, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
