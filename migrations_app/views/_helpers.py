"""Small helpers the page views share: NHS error summaries from Django forms, service errors onto form
fields, and the numbered NHS pagination component."""

from django import forms
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.http import HttpRequest

# Fields rendered with the NHS date input: the error summary links to the day box.
DATE_WIDGETS = (forms.MultiWidget,)
PER_PAGE = 50


def posted(request: HttpRequest) -> tuple:
    """(data, files) for binding a form on POST, (None, None) on GET. Not `request.POST or None`: an empty
    POST is falsy and would leave the form unbound, so a blank submission would show no errors."""
    if request.method == "POST":
        return request.POST, request.FILES
    return None, None


def field_anchor(bound_field) -> str:
    """The id of the element an error summary link should focus; ids are the field's html_name."""
    if isinstance(bound_field.field.widget, DATE_WIDGETS):
        return f"{bound_field.html_name}-day"
    return bound_field.html_name


def error_summary_items(*forms_or_formsets) -> list[dict]:
    """[{"text", "href"}] for the NHS error-summary macro, in the order the fields appear on the page."""
    items: list[dict] = []
    for thing in forms_or_formsets:
        if thing is None:
            continue
        if isinstance(thing, forms.BaseFormSet):
            for form in thing.forms:
                items.extend(error_summary_items(form))
            for message in thing.non_form_errors():
                items.append({"text": message, "href": f"#{thing.prefix}"})
            continue
        if not thing.is_bound or not thing.errors:
            continue
        first_field = next(iter(thing), None)
        for message in thing.non_field_errors():
            href = f"#{field_anchor(first_field)}" if first_field is not None else ""
            items.append({"text": message, "href": href})
        for bound_field in thing:
            for message in bound_field.errors:
                items.append({"text": message, "href": f"#{field_anchor(bound_field)}"})
    return items


def add_service_errors(form: forms.Form, error: ValidationError, *, field_map: dict | None = None) -> None:
    """Put a service's ValidationError on the form: on the named field when the form has it, else on top."""
    field_map = field_map or {}
    if not hasattr(error, "error_dict"):
        for message in error.messages:
            form.add_error(None, message)
        return
    for name, errors in error.error_dict.items():
        target = field_map.get(name, name)
        for message in ValidationError(errors).messages:
            form.add_error(target if target in form.fields else None, message)


def paginate(request: HttpRequest, queryset, *, per_page: int = PER_PAGE) -> tuple[Page, dict | None]:
    """A page of the queryset and the parameters for the NHS pagination macro (None when one page)."""
    paginator = Paginator(queryset, per_page)
    page = paginator.get_page(request.GET.get("page"))
    if paginator.num_pages <= 1:
        return page, None

    def href(number: int) -> str:
        params = request.GET.copy()
        params["page"] = str(number)
        return f"?{params.urlencode()}"

    items: list[dict] = []
    shown = sorted(
        {
            1,
            paginator.num_pages,
            *range(max(1, page.number - 2), min(paginator.num_pages, page.number + 2) + 1),
        }
    )
    previous = None
    for number in shown:
        if previous is not None and number > previous + 1:
            items.append({"ellipsis": True})
        items.append({"number": number, "href": href(number), "current": number == page.number})
        previous = number
    params = {"items": items}
    if page.has_previous():
        params["previous"] = {"href": href(page.previous_page_number())}
    if page.has_next():
        params["next"] = {"href": href(page.next_page_number())}
    return page, params
