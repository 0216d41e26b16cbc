"""Render report sections as Markdown and as a self-contained HTML page (every value escaped)."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence

from tasks.report.blocks import Block, Bold, Bullets, Code, Image, Inline, Paragraph, Section, Table

# -- Markdown -----------------------------------------------------------------------------

# `$` too: GitHub renders $…$ as math.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~$])")


def md_escape(text: str) -> str:
    """Plain text safe in Markdown: no emphasis, links, table breaks or raw HTML."""
    text = html.escape(text, quote=False)  # raw HTML must never reach a Markdown renderer
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _md_inline(part: Inline) -> str:
    if isinstance(part, Bold):
        return f"**{md_escape(part.text)}**"
    if isinstance(part, Code):
        # A code span shows its text verbatim; a fence one backtick longer than any run inside.
        longest = max((len(run) for run in re.findall(r"`+", part.text)), default=0)
        fence = "`" * (longest + 1)
        return f"{fence} {part.text} {fence}" if longest else f"`{part.text}`"
    return md_escape(part)


def _md_paragraph(paragraph: Paragraph) -> str:
    return "".join(_md_inline(part) for part in paragraph.parts)


def _md_block(block: Block, include_images: bool) -> str:
    if isinstance(block, Paragraph):
        return _md_paragraph(block)
    if isinstance(block, Bullets):
        return "\n".join(
            f"{f'{n}.' if block.ordered else '-'} {_md_paragraph(item)}"
            for n, item in enumerate(block.items, start=1)
        )
    if isinstance(block, Table):
        lines = [f"*{md_escape(block.caption)}*", ""] if block.caption else []
        lines.append("| " + " | ".join(md_escape(h) for h in block.headers) + " |")
        lines.append("|" + "|".join("---" for _ in block.headers) + "|")
        lines.extend("| " + " | ".join(md_escape(c) for c in row) + " |" for row in block.rows)
        return "\n".join(lines)
    if isinstance(block, Image):
        if not include_images:
            return f"_{md_escape(block.alt)}: see {md_escape(block.filename)} in the run's report._"
        return f"![{md_escape(block.alt)}]({block.filename})"
    raise TypeError(f"unknown block {type(block).__name__}")


def render_markdown(
    title: str, sections: Sequence[Section], *, level: int = 1, include_images: bool = True
) -> str:
    """Markdown: the title at heading `level`, each section one level below."""
    parts = [f"{'#' * level} {md_escape(title)}"]
    for section in sections:
        parts.append(f"{'#' * (level + 1)} {md_escape(section.title)}")
        parts.extend(_md_block(block, include_images) for block in section.blocks)
    return "\n\n".join(parts) + "\n"


# -- HTML ---------------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_inline(part: Inline) -> str:
    if isinstance(part, Bold):
        return f"<strong>{_e(part.text)}</strong>"
    if isinstance(part, Code):
        return f"<code>{_e(part.text)}</code>"
    return _e(part)


def _html_paragraph(paragraph: Paragraph) -> str:
    return "".join(_html_inline(part) for part in paragraph.parts)


def _html_block(block: Block, images: Mapping[str, bytes]) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_html_paragraph(block)}</p>"
    if isinstance(block, Bullets):
        items = "".join(f"<li>{_html_paragraph(item)}</li>" for item in block.items)
        tag = "ol" if block.ordered else "ul"
        return f"<{tag}>{items}</{tag}>"
    if isinstance(block, Table):
        caption = f"<caption>{_e(block.caption)}</caption>" if block.caption else ""
        head = "".join(f"<th>{_e(h)}</th>" for h in block.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in block.rows
        )
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Image):
        png = images.get(block.filename)
        if png is None:
            return f"<p>{_e(block.alt)}: missing image {_e(block.filename)}</p>"
        data = base64.b64encode(png).decode("ascii")
        return f'<figure><img alt="{_e(block.alt)}" src="data:image/png;base64,{data}"></figure>'
    raise TypeError(f"unknown block {type(block).__name__}")


def render_html_body(
    title: str, sections: Sequence[Section], images: Mapping[str, bytes], *, level: int = 1
) -> str:
    """The report as an HTML fragment: a heading at `level`, sections one below."""
    parts = [f"<h{level}>{_e(title)}</h{level}>"]
    for section in sections:
        parts.append(f"<section><h{level + 1}>{_e(section.title)}</h{level + 1}>")
        parts.extend(_html_block(block, images) for block in section.blocks)
        parts.append("</section>")
    return "\n".join(parts)


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#1d1d1f;line-height:1.45}
table{border-collapse:collapse;margin:.6em 0 1.2em}
th,td{border:1px solid #d0d0d7;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f2f2f6}caption{text-align:left;font-style:italic;padding:.2em 0}
code{background:#f2f2f6;padding:0 .2em}img{max-width:100%}
"""


def wrap_html(title: str, body: str) -> str:
    """A complete page: no external stylesheet, script or image."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )
