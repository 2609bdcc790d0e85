"""Django's ``{# #}`` comments end on their own line: one spanning lines is printed on the page as text (the set
page showed its note to every user, screenshots included). Every template's comments are checked here."""

from __future__ import annotations

import re
from pathlib import Path

import anvil_forge

TEMPLATES = Path(anvil_forge.__file__).parent
OPEN_COMMENT = re.compile(r"\{#(?:(?!#\}).)*$", re.M)  # a {# with no #} after it on the same line


def test_no_template_comment_spans_lines():
    offenders = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if OPEN_COMMENT.search(line):
                offenders.append(f"{path.relative_to(TEMPLATES)}:{number}: {line.strip()[:80]}")
    assert not offenders, "multi-line {# #} comments (use {% comment %}):\n" + "\n".join(offenders)
