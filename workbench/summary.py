"""The one return type of every ``summary()``: a text that also renders as HTML in Jupyter."""
from __future__ import annotations

import html


class Summary(str):
    """Text that displays as itself (not as a quoted string) and as HTML in Jupyter.

    ``str(s)`` is the plain text (CLI, logs, tests); ``s._repr_html_()`` the rich view.
    """

    html: str = ""

    def __new__(cls, text: str, html_text: str = ""):
        obj = super().__new__(cls, text)
        obj.html = html_text
        return obj

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return self.html or f"<pre>{html.escape(str(self))}</pre>"


def with_notes(text: str, rich: str, notes) -> Summary:
    """A summary of ``text`` / ``rich`` with ``notes`` after it: "Note: ..." lines in the
    text, a list in the HTML."""
    if notes:
        text += "\n" + "\n".join(f"Note: {n}" for n in notes)
        rich += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
    return Summary(text, rich)
