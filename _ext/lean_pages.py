"""Pages load what they show.

Jupyter Book 1 adds every ``.js`` file under ``_static/`` to every page (``jupyter_book/config.py``
globs ``_static/**/*.js`` into ``html_js_files``), so every page of the book loaded the demo's
script, which then fetched both demo models and the sample images (2.0 MB of the 4.6 MB the
introduction transferred). Here:

* the demo's script is taken out of ``html_js_files``: only ``chapters/demo.md`` loads it, with
  its own ``<script>`` tag, and the script fetches the models only when its drawing area is on
  screen or used;
* the theme's ``fontawesome.js`` (1.5 MB, loaded "so that users can add custom icons") is left
  out by ``templates/layout.html``: the book adds no custom icon, and the theme's stylesheet
  already draws every icon it shows with the FontAwesome web fonts;
* sphinx-design's stylesheet and tab script are kept only on pages that use its components
  (none does today), and sphinx-thebe's files only when the Thebe launch button is on (it is off).

MathJax needs nothing: Sphinx adds it only to pages with mathematics (no chapter has any today).
``tests/test_published.py`` checks that no page but the demo requests anything under
``_static/demo/`` and that the introduction stays under 2 MB.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEMO_SCRIPT = "demo/demo.js"
SPHINX_DESIGN = ("sphinx-design.min.css", "design-tabs.js")
SPHINX_THEBE = ("sphinx-thebe.css", "sphinx-thebe.js")
USES_SPHINX_DESIGN = re.compile(r'class="(?:[^"]*\s)?sd-')


def _name(asset: Any) -> str:
    """The file name of an html_js_files/css_files entry: a string, a (name, attributes) pair, or an asset."""
    if isinstance(asset, (tuple, list)):
        asset = asset[0]
    return str(getattr(asset, "filename", asset) or "")


def _config_inited(app: Any, config: Any) -> None:
    config.html_js_files = [js for js in config.html_js_files if _name(js) != DEMO_SCRIPT]
    if str(TEMPLATES) not in config.templates_path:
        config.templates_path.insert(0, str(TEMPLATES))


def _drop_unused(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    unused: tuple[str, ...] = ()
    if not USES_SPHINX_DESIGN.search(context.get("body", "")):
        unused += SPHINX_DESIGN
    launch = app.config.html_theme_options.get("launch_buttons", {}) or {}
    if not launch.get("thebe"):
        unused += SPHINX_THEBE
    if not unused:
        return
    for key in ("css_files", "script_files"):
        if context.get(key):
            context[key] = [a for a in context[key] if not _name(a).split("?")[0].endswith(unused)
                            and "THEBE_JS_URL" not in str(getattr(a, "attributes", {}).get("body", ""))]


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _drop_unused, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
