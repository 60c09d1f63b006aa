"""Cells for spreadsheets: text that a spreadsheet would run as a formula is defused.

OWASP's rule for CSV injection: a cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is prefixed with a single quote, which spreadsheets show as text. Numbers stay
numbers (a negative number is a number, not a formula).

>>> [spreadsheet_safe(v) for v in ("=HYPERLINK(1)", "-1+2", "@SUM(A1)", "DN300", -1.5, None)]
["'=HYPERLINK(1)", "'-1+2", "'@SUM(A1)", 'DN300', -1.5, None]
"""

from __future__ import annotations

__all__ = ["spreadsheet_safe"]

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """``value``, or a text that cannot run as a spreadsheet formula."""
    if isinstance(value, str) and value.startswith(_TRIGGERS):
        return "'" + value
    return value
