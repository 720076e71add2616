"""templates/includes/table.html writes the markup of nhsuk-frontend's table component (it replaced the
component's macro on the portal's pages: the component cost ~40 ms of an organisation's page)."""

from html.parser import HTMLParser

from django.template import engines
from markupsafe import Markup


class _Shape(HTMLParser):
    """Tags with their attributes (class names as a set) and the text, whitespace ignored."""

    def __init__(self):
        super().__init__()
        self.shape = []

    def handle_starttag(self, tag, attrs):
        self.shape.append((tag, sorted((k, " ".join(sorted((v or "").split()))) for k, v in attrs)))

    def handle_endtag(self, tag):
        self.shape.append(("/" + tag,))

    def handle_data(self, data):
        if data.split():
            self.shape.append(("text", " ".join(data.split())))


def _render(source: str, params: dict) -> list:
    html = (
        engines["jinja2"]
        .env.from_string(f'{{% from "{source}" import table %}}{{{{ table(p) }}}}')
        .render(p=params)
    )
    parser = _Shape()
    parser.feed(html)
    return parser.shape


PARAMS = [
    {
        "head": [{"text": "File"}, "Kind", {"text": "Rows", "format": "numeric"}],
        "rows": [
            [
                {"html": Markup('<a href="/imports/1/">a.csv</a>')},
                "<script>",
                {"text": "1,234", "format": "numeric"},
            ],
            [Markup("<b>bold</b>"), {"text": "Permissions"}, "0"],
        ],
        "responsive": True,
        "compact": True,
        "caption": {"text": "Imports", "size": "s"},
    },
    {"head": ["Starts", "Ends"], "rows": [["1 May", "2 May"]]},
    {"caption": "No head", "rows": [["a", {"text": "b", "format": "numeric"}]], "classes": "extra-class"},
]


def test_the_same_markup_as_the_nhsuk_component():
    for params in PARAMS:
        assert _render("includes/table.html", params) == _render(
            "nhsuk/components/tables/macro.jinja", params
        )


def test_text_is_escaped_html_is_not_and_numbers_are_printed():
    shape = _render(
        "includes/table.html", {"head": ["A", "B", "C"], "rows": [["<script>", Markup("<i>x</i>"), 0]]}
    )
    assert ("text", "<script>") in shape and ("script", []) not in shape  # shown as text, not run
    assert ("i", []) in shape
    assert ("text", "0") in shape  # the component drops a cell that is not a string (0 rows, 0 errors)
