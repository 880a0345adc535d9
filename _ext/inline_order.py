"""Run every chapter's cells in page order under myst-nb's inline execution, as "Run all" does.

myst-nb 1.4 drops cells tagged ``remove-cell`` when it turns a notebook into tokens, and its
inline client executes a code cell only when a later *shown* code cell asks for its outputs.
So a paragraph's ``{eval}`n["name"]``` role, evaluated while the paragraph renders, may come
before the removed cell above it that computes ``name`` has run (a NameError or KeyError), and
removed cells after the last shown code cell, such as a chapter's closing ``book.require``
checks, would never run. This runs every cell above a Markdown cell before the cell renders,
and every remaining cell before the page is finished: the order JupyterLab runs them in.
"""

from __future__ import annotations

from typing import Any


def run_cells_in_page_order() -> None:
    from myst_nb.core.execute.inline import NotebookClientInline
    from myst_nb.core.render import MditRenderMixin

    if getattr(MditRenderMixin, "_runs_cells_in_page_order", False):
        return
    render_markdown = MditRenderMixin.render_nb_cell_markdown
    finalise = NotebookClientInline.finalise_client

    def render_nb_cell_markdown(self: Any, token: Any) -> None:
        if isinstance(self.nb_client, NotebookClientInline):
            self.nb_client.code_cell_outputs(token.meta["index"])  # runs every cell up to this one
        render_markdown(self, token)

    def finalise_client(self: NotebookClientInline) -> None:
        self.code_cell_outputs(len(self.notebook.cells) - 1)  # the cells after the last shown one
        finalise(self)

    MditRenderMixin.render_nb_cell_markdown = render_nb_cell_markdown
    NotebookClientInline.finalise_client = finalise_client
    MditRenderMixin._runs_cells_in_page_order = True


def setup(app: Any) -> dict[str, Any]:
    run_cells_in_page_order()
    return {"parallel_read_safe": True, "parallel_write_safe": True}
