"""templates/includes/table.html and summary_list.html write the markup of nhsuk-frontend's table and summary
list (they replaced the components' macros on the portal's pages: the table component cost ~40 ms of an
organisation's page, the summary list ~4 ms)."""

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


def _render(source: str, params: dict, name: str = "table") -> list:
    html = (
        engines["jinja2"]
        .env.from_string(f'{{% from "{source}" import {name} %}}{{{{ {name}(p) }}}}')
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


SUMMARIES = [
    {
        "rows": [
            {"key": {"text": "ODS code"}, "value": {"text": "RJ1"}},
            {"key": {"text": "Name"}, "value": {"text": "  <Guy's & St Thomas'>  "}},
            {"key": {"text": "Parent"}, "value": {"html": Markup('<a href="/organisations/Q1/">Q1</a>')}},
            {"key": {"text": "Empty"}, "value": {"text": ""}},
            {"key": "A plain key", "value": "a plain value"},
            {"key": Markup("<b>Marked</b>"), "value": Markup("<i>safe</i>")},
        ]
    },
    {
        "rows": [
            {"key": {"text": "Gate"}, "value": {"html": Markup('<strong class="nhsuk-tag">Met</strong>')}}
        ],
        "classes": "extra",
        "id": "gates",
    },
    {"rows": []},
]


def test_the_summary_list_has_the_same_markup_as_the_nhsuk_component():
    for params in SUMMARIES:
        ours = _render("includes/summary_list.html", params, "summary_list")
        assert ours == _render("nhsuk/components/summary-list/macro.jinja", params, "summaryList")
    shape = _render("includes/summary_list.html", SUMMARIES[0], "summary_list")
    assert ("text", "<Guy's & St Thomas'>") in shape and ("b", []) in shape  # text escaped, Markup kept
