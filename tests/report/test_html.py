"""report.html is rendered from report.md (markdown-it-py), so the two cannot disagree."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from genmodes.report.build import to_html, to_markdown

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


class _Text(HTMLParser):
    """Visible text of a page, one piece per text node, and the tags of its elements."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._hidden += tag in ("style", "title")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("style", "title")

    def handle_data(self, data):
        if not self._hidden and data.strip():
            self.text.append(" ".join(data.split()))


def _parse(page: str) -> _Text:
    p = _Text()
    p.feed(page)
    return p


def test_every_block_kind_renders_as_html_with_images_embedded(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "acc.png").write_bytes(PNG)
    blocks = [("h", 2, "Accuracy of `finetune`"), ("p", "Chance is 1 / 4; a <b>tag</b> stays text."),
              ("list", ["first", "second"]),
              ("table", ["condition", "accuracy"], [["in_context", "93.8% ± 6.2%"], ["a | b", "–"]]),
              ("img", str(tmp_path / "figures" / "acc.png"), "accuracy chart"),
              ("pre", "name: x\nseeds: [0]", "yaml")]
    md = to_markdown(blocks, tmp_path)
    page = to_html(md, "t", tmp_path)
    p = _parse(page)
    assert p.text == ["Accuracy of", "finetune", "Chance is 1 / 4; a <b>tag</b> stays text.", "first", "second",
                      "condition", "accuracy", "in_context", "93.8% ± 6.2%", "a | b", "–", "name: x seeds: [0]"]
    assert {"h2", "code", "ul", "li", "table", "th", "td", "img", "pre"} <= set(p.tags)
    assert "<b>" not in page  # raw HTML in the markdown is escaped, never passed through
    assert '<td style="text-align:right">93.8% ± 6.2%</td>' in page  # numbers right-aligned, as in the markdown
    assert page.count(f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"') == 1
    assert 'alt="accuracy chart"' in page and "figures/" not in page


def test_the_report_html_says_what_its_markdown_says(tiny_run):
    out, md, page = tiny_run
    p = _parse(page)
    # every heading and table cell of the markdown appears, in order, in the page's text
    expect = []
    for line in md.splitlines():
        if line.startswith("#"):
            expect.append(line.lstrip("#").strip().replace("`", ""))
        elif line.startswith("|") and not re.fullmatch(r"\|[-:|]+\|", line):
            expect += [c.strip().replace("\\|", "|").replace("`", "")
                       for c in re.split(r"(?<!\\)\|", line)[1:-1] if c.strip()]
    text, at, missing = " ".join(p.text), 0, []
    for e in expect:
        found = text.find(" ".join(e.split()), at)
        if found < 0:
            missing.append(e)
        else:
            at = found + len(e)
    assert expect and missing == []
    assert p.tags.count("img") == md.count("![") == len(list((out / "figures").glob("*.png")))
    assert p.tags.count("table") == sum(1 for line in md.splitlines() if re.fullmatch(r"\|[-:|]+\|", line))
