"""Every CSV export goes through here: streamed row by row (a national list is millions of rows, never held in
memory), and with spreadsheet formula injection neutralised.

A cell that starts with =, +, -, @, a tab or a carriage return is taken by Excel, LibreOffice and Google
Sheets as a formula (OWASP "CSV injection"): a display name such as `=HYPERLINK("http://evil", "Click")`
would run when the service desk opens the file. Such a cell gets a leading single quote, which the
spreadsheet shows as text; nothing is dropped.
"""

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_SIZE = 2000  # rows fetched per round trip by queryset.iterator(chunk_size=...)


def neutralise(value: Any) -> str:
    """The text of one cell, safe to open in a spreadsheet."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


class _Echo:
    """csv.writer wants a file; this one hands each written line straight back."""

    def write(self, value: str) -> str:
        return value


def csv_response(filename: str, header: list[str], rows: Iterable[Iterable[Any]]) -> StreamingHttpResponse:
    """A streamed CSV download: the header, then each row as the iterable yields it (pass a generator over
    queryset.iterator(chunk_size=CHUNK_SIZE), so the rows are read from the database as they are sent)."""
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield "\ufeff"  # a byte-order mark: Excel then reads the file as UTF-8
        yield writer.writerow([neutralise(h) for h in header])
        for row in rows:
            yield writer.writerow([neutralise(cell) for cell in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
