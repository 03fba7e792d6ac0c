"""Results and errors as Jupyter MIME bundles: the only module that knows MIME types."""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from .errors import ThanoSQLError
from .results import Image, Images, Message, Progress, Result, Table
from .text import MAX_CELL_CHARS, display_width, format_value

_MAX_HTML_CELL_CHARS = 2000
_RED, _RESET = "\x1b[0;31m", "\x1b[0m"
_MAX_ERROR_LINE = 1_000


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def _shape_note(table: Table) -> str | None:
    shown, total = len(table.rows), table.row_count
    if shown >= total:
        return None
    return (f"{total:,} rows × {len(table.columns)} columns "
            f"(showing the first {shown:,}; add LIMIT or WHERE to see others)")


def _cells(table: Table, limit: int = MAX_CELL_CHARS, last: int | None = None
           ) -> list[list[str]]:
    """Each row's values as text, at most ``limit`` characters (``last`` in the last
    column)."""
    vectors = [c in table.vector_columns for c in table.columns]
    limits = [limit] * len(table.columns)
    if limits and last is not None:
        limits[-1] = last
    return [[format_value(v, is_vector, n)
             for v, is_vector, n in zip(row, vectors, limits, strict=True)]
            for row in table.rows]


def table_text(table: Table) -> str:
    # the last column may run on to the right without pushing any other out of line
    cells = _cells(table, last=_MAX_HTML_CELL_CHARS)
    widths = [max([display_width(c)] + [display_width(r[i]) for r in cells])
              for i, c in enumerate(table.columns)]
    if widths:
        widths[-1] = min(widths[-1], max(MAX_CELL_CHARS, display_width(table.columns[-1])))
    numeric = [all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool)
                   for r in table.rows if r[i] is not None) and bool(table.rows)
               for i in range(len(table.columns))]

    def line(values: list[str]) -> str:
        return "  ".join(_pad(v, w, n)
                         for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(list(table.columns)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    note = _shape_note(table)
    if note:
        out.append(note)
    elif not table.rows:
        out.append("(no rows)")
    return "\n".join(out)


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
        for row in _cells(table, _MAX_HTML_CELL_CHARS))
    note = _shape_note(table) or ("(no rows)" if not table.rows else None)
    foot = f"<p>{html.escape(note)}</p>" if note else ""
    return (f'<div class="thanosql-table"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>{foot}</div>")


#: (kind, data, metadata): kind "display" for a MIME bundle to display, "printed" for text a
#: front end shows as printed text (``data["text/plain"]``, sent as a stdout ``stream``)
Output = tuple[str, dict[str, Any], dict[str, Any]]


def to_bundles(result: Result) -> list[dict[str, Any]]:
    """The MIME bundles that show a result, in order (PRINT IMAGE: each image, its caption)."""
    return [data for _, data, _ in to_outputs(result)]


def to_messages(result: Result, as_result: bool, execution_count: int
                ) -> list[tuple[str, dict[str, Any]]]:
    """The iopub messages (type, content) that show a result: ``display_data``, the last
    output an ``execute_result`` when ``as_result``, printed text a ``stream``."""
    outputs = to_outputs(result)
    messages: list[tuple[str, dict[str, Any]]] = []
    for j, (kind, data, metadata) in enumerate(outputs):
        if kind == "printed":
            messages.append(("stream", {"name": "stdout", "text": data["text/plain"] + "\n"}))
        elif as_result and j == len(outputs) - 1:
            messages.append(("execute_result", {"execution_count": execution_count,
                                                "data": data, "metadata": metadata}))
        else:
            messages.append(("display_data", {"data": data, "metadata": metadata}))
    return messages


def to_outputs(result: Result) -> list[Output]:
    """Each output that shows a result, in order.

    A table shows the rows it holds and, when the engine kept only the first of them (the
    display limit), how many there are in all.
    """
    if result is None:
        return []
    if isinstance(result, Table):
        return [("display", {"text/plain": table_text(result),
                             "text/html": table_html(result)}, {})]
    if isinstance(result, Message):
        return [("display", {"text/plain": result.text}, {})]
    if isinstance(result, Images):
        outputs = [output for i in result.images for output in image_outputs(i)]
        if result.total > len(result.images):
            outputs.append(("display", {"text/plain": f"showing {len(result.images)} of "
                                                      f"{result.total:,} images (set OPTIONS "
                                                      "(limit=…) to see more)"}, {}))
        elif not result.images:
            outputs.append(("display", {"text/plain": "(no rows, so no images)"}, {}))
        return outputs
    raise TypeError(f"no display for {type(result).__name__}")


def image_outputs(image: Image) -> list[Output]:
    """An image, then its caption: the image as ``image/png``, which every front end and
    exporter knows for an image (JupyterLab, nbconvert's HTML, PDF and Markdown with its
    extracted files, the kernel conformance suite), the caption printed under it.

    The caption is printed text, not part of the image's bundle nor a display of its own:
    JupyterLab shows only the richest type of a bundle, ``jupyter console`` hands an
    ``image/png`` to an image viewer and prints nothing of its bundle, and the conformance
    suite wants every display of an image's cell to be the image. The image's own text says
    which file it is, for a front end that shows no images.
    """
    if image.png is None:
        return [("display", {"text/plain": f"{image.caption}\n  (cannot show {image.path}: "
                                           f"{image.problem})"}, {})]
    size = {"width": image.width, "height": image.height} if image.width and image.height \
        else {}
    return [("display", {"image/png": base64.b64encode(image.png).decode("ascii"),
                         "text/plain": f"[image {image.path}]"},
             {"image/png": size} if size else {}),
            ("printed", {"text/plain": image.caption}, {})]


def _duration(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_text(p: Progress, width: int = 24) -> str:
    fraction = min(1.0, p.done / p.total) if p.total else 1.0
    filled = int(round(fraction * width))
    bar = "█" * filled + "·" * (width - filled)
    if p.ended:
        state = f"{p.ended} at {p.done:,}/{p.total:,} {p.unit} after {_duration(p.elapsed)}"
    elif p.finished:
        state = f"done in {_duration(p.elapsed)}"
    else:
        state = f"{_duration(p.elapsed)} elapsed, {_duration(p.seconds_left)} left"
    parts = [f"{p.title} |{bar}| {fraction:4.0%} {p.done:,}/{p.total:,} {p.unit}",
             f"{p.rate:,.0f} {p.unit}/s", state]
    if p.detail:
        parts.append(p.detail)
    return " · ".join(parts)


def progress_bundle(p: Progress) -> dict[str, Any]:
    fraction = min(1.0, p.done / p.total) if p.total else 1.0
    text = progress_text(p)
    # an ended bar says so in red, where a user looks first
    colour = ' style="color:var(--jp-error-color1,#c00)"' if p.ended else ""
    return {
        "text/plain": text,
        "text/html": (f'<div class="thanosql-progress"><b>{html.escape(p.title)}</b> '
                      f'<progress value="{fraction:.4f}" max="1" '
                      f'style="width:12em;vertical-align:middle"></progress> '
                      f"<code{colour}>{html.escape(text.split('|', 2)[-1].strip())}</code>"
                      "</div>"),
    }


def error_content(error: BaseException, statement: str | None = None,
                  cell: str | None = None) -> dict[str, Any]:
    """``ename``, ``evalue`` and ``traceback`` for one error message, with no Python frames.

    An error that knows its offset in ``cell`` is shown with the line, the column and a caret.
    """
    if isinstance(error, KeyboardInterrupt):
        ename = "KeyboardInterrupt"
        evalue = "Interrupted: the statement was stopped, and nothing it had begun was kept."
    elif isinstance(error, ThanoSQLError):
        ename, evalue = error.ename, error.describe(cell)
    else:
        ename = "InternalError"
        evalue = (f"{type(error).__name__}: {error}\nThis is a bug in thanosql-kernel; "
                  "the kernel is still running. Please report it with the statement.")
    if statement and not (isinstance(error, ThanoSQLError) and error.where(cell) is not None):
        shown = statement if len(statement) <= 300 else statement[:299] + "…"
        evalue = f"{evalue}\nIn the statement:\n  " + shown.replace("\n", "\n  ")
    # whatever a message quotes, no line of it runs on for pages
    evalue = "\n".join(line if len(line) <= _MAX_ERROR_LINE else
                        line[:_MAX_ERROR_LINE - 1] + "…" for line in evalue.split("\n"))
    return {"ename": ename, "evalue": evalue,
            "traceback": [f"{_RED}{ename}{_RESET}: {evalue}"]}
