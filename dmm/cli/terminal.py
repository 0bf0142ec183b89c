"""Text from the store on the operator's terminal: shown, never obeyed.

An exchange's feed decides what is stored (ids, messages, notes), and a terminal obeys control characters: an
id with `ESC [2J` would clear the screen, one with a bidirectional override would show its characters in
another order, and rich would read `[bold]` in it as markup. So wherever the CLI prints stored text, every
control character (Unicode category Cc: C0, DEL and C1) and every bidirectional control is written as a
visible `\\uXXXX` (also a valid JSON escape, so JSON output stays JSON), and text handed to rich is
markup-escaped as well.
"""

from __future__ import annotations

from rich.markup import escape

_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]  # Unicode category Cc
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_VISIBLE = {code: f"\\u{code:04x}" for code in (*_CONTROLS, *_BIDI)}
_VISIBLE_KEEPING_LINES = {code: shown for code, shown in _VISIBLE.items() if chr(code) not in "\n\t"}


def printable(text: str, keep_lines: bool = False) -> str:
    """`text` with control characters shown as `\\uXXXX`; newlines and tabs kept if `keep_lines` (ClickHouse's
    own table and TSV layout), else escaped too (one field must not fake another line)."""
    return text.translate(_VISIBLE_KEEPING_LINES if keep_lines else _VISIBLE)


def markup_safe(text: object) -> str:
    """Stored text for rich: control characters shown, markup escaped."""
    return escape(printable(str(text)))
