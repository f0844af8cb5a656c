"""The report's templates (analysis/templates/): Jinja2, HTML autoescaped, so no text of the results becomes markup;
the page's CSS and script are template files too, inlined when the page is rendered."""
import functools
import os

import jinja2

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


@functools.lru_cache(maxsize=None)
def environment():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(FOLDER), undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False))
    # the embedded data: compact, and '<', '>', '&' escaped so that no text in it can end its <script> element
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "ensure_ascii": False}
    return env


def render(name, **context):
    return environment().get_template(name).render(**context)


def frame_table(frame, index=False):
    """A small table for a template's `table` macro: its column names and rows of text (the index first, as
    columns of their own, when `index`)."""
    if index:
        frame = frame.reset_index()
    shown = frame.astype(object).where(frame.notna(), "").astype(str)
    return {"columns": [str(column) for column in shown.columns], "rows": shown.to_numpy().tolist()}
