"""A static HTML page that shows an experiment's figures with the parameters that produced them."""
from __future__ import annotations

import html
import json
import os
from typing import Mapping, Sequence

from jaxinv.io import outputs


def write_html(path: str, title: str, parameters: Mapping, sections: Sequence[tuple[str, Sequence[str]]],
               notes: str = "") -> str:
    """Writes `path` atomically: the title, a table of `parameters`, then one heading per section
    followed by its files (PNG shown inline, anything else linked), paths relative to the page."""
    directory = os.path.dirname(os.path.abspath(path))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
             "img{max-width:100%;image-rendering:pixelated;border:1px solid #eee}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append(f"<p>{html.escape(notes)}</p>")
    parts.append("<h2>Parameters</h2><table>")
    for key, value in parameters.items():
        shown = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(shown))}</td></tr>")
    parts.append("</table>")
    for heading, files in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for file in files:
            relative = html.escape(os.path.relpath(os.path.abspath(file), directory))
            if file.lower().endswith(".png"):
                parts.append(f"<figure><img src='{relative}'><figcaption>{relative}</figcaption></figure>")
            else:
                parts.append(f"<p><a href='{relative}'>{relative}</a></p>")
    parts.append("</body></html>\n")

    def write(tmp):
        with open(tmp, "w") as f:
            f.write("\n".join(parts))
    return outputs.atomic_write(path, write, ".html")
