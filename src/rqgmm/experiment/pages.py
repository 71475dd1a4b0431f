"""Report documents of the studies: a list of blocks rendered as Markdown, self-contained HTML
(images inlined, nothing fetched from the network) and terminal tables.

A block is ``("h", level, text)``, ``("p", text)``, ``("table", header, rows)`` or
``("img", path relative to the report directory, alt text)``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from rqgmm.io.atomic import atomic_path

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
          ".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px"
          " solid #ccc;padding:3px 8px;text-align:right}td:first-child,td:nth-child(2),th{text-align:left}"
          "th{background:#f3f3f3}img{max-width:100%}")


def markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *content in blocks:
        if kind == "h":
            out.append("#" * content[0] + " " + content[1])
        elif kind == "p":
            out.append(content[0])
        elif kind == "table":
            header, rows = content
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out += ["| " + " | ".join(row) + " |" for row in rows]
        elif kind == "img":
            out.append(f"![{content[1]}]({content[0]})")
        elif kind == "code":
            out.append("```\n" + content[0] + "\n```")
        out.append("")
    return "\n".join(out)


def html_page(blocks: list[tuple], directory: Path, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport'"
             f" content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body>"]
    for kind, *content in blocks:
        if kind == "h":
            parts.append(f"<h{content[0]}>{html.escape(content[1])}</h{content[0]}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(content[0])}</p>")
        elif kind == "table":
            header, rows = content
            parts.append("<div class='scroll'><table><tr>"
                         + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table></div>")
        elif kind == "code":
            parts.append(f"<pre>{html.escape(content[0])}</pre>")
        elif kind == "img":
            data = base64.b64encode((directory / content[0]).read_bytes()).decode()
            parts.append(f"<p><img alt='{html.escape(content[1])}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_pages(directory: Path, blocks: list[tuple], title: str) -> None:
    """report.md and report.html in ``directory``, each written atomically."""
    with atomic_path(directory / "report.md", overwrite=True) as tmp:
        tmp.write_text(markdown(blocks))
    with atomic_path(directory / "report.html", overwrite=True) as tmp:
        tmp.write_text(html_page(blocks, directory, title))


def save_figure(figure, path: Path) -> None:
    """A matplotlib ``Figure`` (object-oriented API: the global backend is never switched) as PNG."""
    with atomic_path(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A fixed-width table for the terminal."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
