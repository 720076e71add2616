"""Token scopes follow the role: a token can never carry a scope its owner's role cannot use."""

import pytest
from django.core.exceptions import ValidationError

from migrations_app.services.tokens import token_create
from tests.factories import UserFactory


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "refused"),
    [("viewer", ["write"]), ("viewer", ["approve"]), ("trust_admin", ["approve"])],
)
def test_it_refuses_a_scope_the_role_cannot_use(role, refused):
    with pytest.raises(ValidationError, match="cannot use"):
        token_create(user=UserFactory(role=role), name="x", scopes=["read", *refused], expires_at=None)


@pytest.mark.django_db
def test_the_programme_office_may_have_every_scope():
    token, _ = token_create(
        user=UserFactory(role="programme_office"),
        name="x",
        scopes=["read", "write", "approve"],
        expires_at=None,
    )
    assert token.scopes == ["approve", "read", "write"]
