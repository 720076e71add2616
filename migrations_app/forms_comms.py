"""Forms for notifications and support (issue 18): the public help form, template editing, an organisation's
paragraph, a ticket upload and the gate's reasons."""

from django import forms

from migrations_app.models import SupportRequest


class HelpRequestForm(forms.Form):
    email = forms.CharField(label="Your work email address", max_length=254)
    category = forms.ChoiceField(
        label="What is wrong?", choices=SupportRequest.Category.choices, widget=forms.RadioSelect
    )
    description = forms.CharField(
        label="Tell us more (optional)",
        required=False,
        max_length=2000,
        widget=forms.Textarea,
        help_text="Do not include passwords or patient information",
    )


class TemplateForm(forms.Form):
    subject = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea)


class NoticeForm(forms.Form):
    paragraph = forms.CharField(
        label="Paragraph added to your staff's notifications",
        required=False,
        max_length=2000,
        widget=forms.Textarea,
        help_text="For example how to reach your service desk. No patient information.",
    )


class TicketUploadForm(forms.Form):
    file = forms.FileField(
        label="Service desk tickets (CSV)", help_text="Columns: reference, address, opened_at, category"
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=2000, required=False, widget=forms.Textarea)
