"""Check constraints built from the models' own choices, so the database refuses a state the code does not
know and the constraint follows the enum: add a state to the TextChoices and `makemigrations` writes the
new constraint (docs/adr/021-state-constraints.md)."""

from django.db import models
from django.db.models import Q


def one_of(
    field: str, choices: type[models.Choices], *, name: str, blank: bool = False
) -> models.CheckConstraint:
    """`field` holds one of `choices`' values (or "" when `blank`)."""
    values = [*choices.values, *([""] if blank else [])]
    return models.CheckConstraint(condition=Q(**{f"{field}__in": values}), name=name)


def only_if(condition: Q, then: Q, *, name: str) -> models.CheckConstraint:
    """Whenever `condition` holds, `then` holds too."""
    return models.CheckConstraint(condition=~condition | then, name=name)
