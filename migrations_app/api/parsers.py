"""The API's JSON parser: DRF's, with limits on what can reach a view. A deeply nested document raised
RecursionError (a 500); a "\\u0000" in a string reached PostgreSQL, which cannot store it (a 500)."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32


def _check(document) -> None:
    """Walk without recursion: depth and NUL characters in keys and strings."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and "\x00" in key:
                    raise ParseError("A JSON key holds a NUL character (\\u0000)")
                stack.append((item, depth + 1))
        elif isinstance(value, str) and "\x00" in value:
            raise ParseError("A JSON string holds a NUL character (\\u0000)")


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            document = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        _check(document)
        return document
