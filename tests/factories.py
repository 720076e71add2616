import factory

from migrations_app.models import Mailbox, Organisation, User


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.nhs.uk")
    password = factory.django.Password("correct horse battery staple")
    role = User.Role.VIEWER


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation
        django_get_or_create = ("ods_code",)

    ods_code = factory.Sequence(lambda n: f"X{n:05d}")
    name = factory.Sequence(lambda n: f"Test organisation {n}")
    kind = Organisation.Kind.TRUST
    region = Organisation.Region.LONDON
    status = Organisation.Status.ENROLLED
    # Ready to plan unless a test says otherwise: the readiness tests set gates to False themselves.
    gate_mfa_enforced = True
    gate_acceptable_use = True
    gate_licences_assigned = True
    gate_service_desk_briefed = True


class MailboxFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Mailbox

    organisation = factory.SubFactory(OrganisationFactory)
    email = factory.Sequence(lambda n: f"person{n}@example.nhs.uk")
    display_name = factory.Sequence(lambda n: f"Person {n}")
    kind = Mailbox.Kind.USER
    size_bytes = 1_000_000
    item_count = 1_000
