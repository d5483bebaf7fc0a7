"""The painter's HTML: the page itself and the short pages that answer a submission or refuse a link.

Everything the page needs comes from the bot (no CDN). Values are escaped here; the script reads its
data from ``data-`` attributes, so the Content-Security-Policy can forbid inline script entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from importlib import resources

from aiohttp import web

# No inline script or style, nothing from elsewhere; the form posts only back here; no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",  # the link is the key: it must not leak to another site
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
STATIC = ("painter.js", "painter.css")
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css"}


def static_file(name: str) -> bytes:
    return resources.files("bot.web").joinpath("static", name).read_bytes()


@dataclass(frozen=True)
class Form:
    """The page's starting values: the job's settings, and the presets the member may pick."""

    prompt: str
    negative_prompt: str
    strength: float
    presets: list[str]


def _document(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="robots" content="noindex">
<title>{escape(title)}</title>
<link rel="stylesheet" href="/painter/painter.css">
</head>
{body}
</html>
"""


def painter_page(action: str, size: tuple[int, int], form: Form, *, select: bool) -> str:
    """``action``: the link's own path; the picture and the Select tool's answers are below it."""
    options = "".join(f'<option value="{escape(name)}">{escape(name)}</option>' for name in form.presets)
    width, height = size
    selection = SELECT_TOOLS if select else ""
    body = f"""<body class="painter">
<main id="painter" data-link="{escape(action)}" data-width="{width}" data-height="{height}">
<section class="stage" id="stage">
<canvas id="view" aria-label="The picture; paint the area to repaint"></canvas>
</section>
<section class="tools" aria-label="Tools">
<div class="group" role="radiogroup" aria-label="Tool">
<button type="button" class="tool active" role="radio" data-tool="brush" title="Brush (B)">Brush</button>
<button type="button" class="tool" role="radio" data-tool="eraser" title="Eraser (E)">Eraser</button>
<button type="button" class="tool" role="radio" data-tool="rect" title="Rectangle (R)">Rectangle</button>
<button type="button" class="tool" role="radio" data-tool="lasso" title="Lasso (L)">Lasso</button>
{selection}<button type="button" class="tool" role="radio" data-tool="pan" title="Move (space)">Move</button>
</div>
<div class="group">
<label>Size <input type="range" id="size" min="2" max="400" value="40"></label>
<label>Overlay <input type="range" id="opacity" min="10" max="100" value="55"></label>
</div>
<div class="group">
<button type="button" id="undo" title="Undo (Ctrl+Z)">↶ Undo</button>
<button type="button" id="redo" title="Redo (Ctrl+Y)">↷ Redo</button>
<button type="button" id="clear">Clear</button>
<button type="button" id="invert">Invert</button>
<button type="button" id="fit" title="Fit the picture (0)">Fit</button>
</div>
</section>
<form class="settings" id="form" method="post" action="{escape(action)}" enctype="multipart/form-data">
<label>Prompt <textarea name="prompt" rows="3" maxlength="2000">{escape(form.prompt)}</textarea></label>
<label>Negative prompt <textarea name="negative_prompt" rows="2" maxlength="2000">{escape(form.negative_prompt)}</textarea></label>
<label>Strength <input type="range" name="strength" id="strength" min="0" max="1" step="0.01" value="{form.strength:g}"> <output id="strength-value">{form.strength:g}</output></label>
<label>Preset <select name="preset"><option value="">these settings</option>{options}</select></label>
<input type="file" name="mask" id="mask" accept="image/png" hidden>
<p class="hint" id="hint">Paint over what should change. Two fingers (or the wheel) zoom and move.</p>
<button type="submit" id="paint" class="primary">Paint</button>
</form>
</main>
<script src="/painter/painter.js"></script>
</body>"""
    return _document("Paint the area to repaint", body)


# Shown only while the models of masks from words are on: a click outlines the thing under it.
SELECT_TOOLS = (
    '<button type="button" class="tool" role="radio" data-tool="select" title="Select the thing you click (S)">'
    "Select</button>"
    '<button type="button" class="tool" role="radio" data-tool="unselect" '
    'title="Take the thing you click out (U)">Unselect</button>'
)


def message_page(title: str, message: str, *, back: str | None = None) -> str:
    link = f'<p><a class="button" href="{escape(back)}">Back to Discord</a></p>' if back else ""
    body = f"""<body class="message">
<main>
<h1>{escape(title)}</h1>
<p>{escape(message)}</p>
{link}
</main>
</body>"""
    return _document(title, body)


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def refused(message: str, status: int) -> web.Response:
    """Every refusal is a page a person can read: nothing was queued."""
    return html(message_page("Nothing was queued", message), status)
