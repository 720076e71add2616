"""Shapes of the wave, planner and decision API. Validation of input only: the services decide."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from migrations_app.errors_catalogue import explain
from migrations_app.models import (
    Decision,
    Endpoint,
    Event,
    ImportJob,
    Mailbox,
    Organisation,
    ReadinessCheck,
    Wave,
    Webhook,
    WebhookDelivery,
)
from migrations_app.selectors.waves import plan_unplaced_rows, wave_totals_seen_by
from migrations_app.services.plans import wave_name


class WaveSerializer(serializers.ModelSerializer):
    proposed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:wave-detail")

    class Meta:
        model = Wave
        fields = [
            "id",
            "url",
            "name",
            "kind",
            "is_pilot",
            "status",
            "starts_at",
            "ends_at",
            "capacity_mailboxes",
            "capacity_bytes",
            "planned_mailboxes",
            "planned_bytes",
            "proposed_by",
            "approved_by",
            "approved_at",
            "stamped_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None and not getattr(request.user, "is_programme_office", False):
            # a trust sees its own share of a shared wave, nothing of the other trusts in it
            data["planned_mailboxes"], data["planned_bytes"] = wave_totals_seen_by(instance, request.user)
        return data


class WaveOrganisationSerializer(serializers.Serializer):
    ods_code = serializers.CharField(source="organisation.ods_code")
    name = serializers.CharField(source="organisation.name")
    mailboxes = serializers.IntegerField()
    bytes = serializers.IntegerField()
    response = serializers.CharField()


class DecisionSerializer(serializers.ModelSerializer):
    organisation = serializers.SlugRelatedField(slug_field="ods_code", read_only=True, allow_null=True)
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)
    on_behalf = serializers.BooleanField(
        read_only=True, help_text="a go or no-go the programme office recorded for the organisation"
    )

    class Meta:
        model = Decision
        fields = ["id", "wave", "organisation", "kind", "actor", "on_behalf", "reason", "created_at"]
        read_only_fields = fields


class ActionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    organisation = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="ODS code (go, no-go)"
    )


class MailboxActionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class RetryFailuresSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=40, help_text="the error code whose failures to retry")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class PlaceCarriedOverSerializer(serializers.Serializer):
    target_wave = serializers.IntegerField(
        help_text="id of the wave to place them in (draft, proposed, approved)"
    )
    confirm = serializers.BooleanField(default=False, help_text="place them despite the warnings")


class WaveMailboxSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.CharField()
    organisation = serializers.CharField(help_text="ODS code")
    state = serializers.CharField()
    size_bytes = serializers.IntegerField()
    affinity_group = serializers.CharField()


class MoveResultSerializer(serializers.Serializer):
    moved = serializers.BooleanField()
    warnings = serializers.ListField(child=serializers.CharField())


class MoveOrganisationSerializer(serializers.Serializer):
    organisation = serializers.CharField(help_text="ODS code")
    target = serializers.IntegerField(help_text="id of the wave to move to")
    confirm = serializers.BooleanField(default=False, help_text="move even with warnings")


class PlanRequestSerializer(serializers.Serializer):
    start = serializers.DateField()
    fingerprint = serializers.CharField(required=False, allow_blank=True, default="")


class PilotRequestSerializer(serializers.Serializer):
    starts_on = serializers.DateField()
    kind = serializers.ChoiceField(choices=Wave.Kind.choices, default=Wave.Kind.EVENING)
    organisations = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    per_organisation = serializers.IntegerField(min_value=1, max_value=100, required=False)


def plan_as_data(plan, *, unplaced_limit: int = 500) -> dict:
    """The preview as JSON: waves with counts and bytes, the unplaced with reasons, the forecast finish."""
    return {
        "start": plan.start,
        "end": plan.end,
        "fingerprint": plan.fingerprint,
        "mailboxes": plan.mailboxes,
        "bytes": plan.bytes,
        "forecast_finish": plan.finish,
        "waves": [
            {
                "name": wave_name(w.window),
                "kind": w.window.kind,
                "starts_at": w.window.starts_at,
                "ends_at": w.window.ends_at,
                "mailboxes": w.mailboxes,
                "bytes": w.bytes,
                "organisations": w.organisations,
                "capacity_mailboxes": w.capacity_mailboxes,
                "capacity_bytes": w.capacity_bytes,
            }
            for w in plan.waves
        ],
        "unplaced_mailboxes": plan.unplaced_mailboxes,
        "unplaced": plan_unplaced_rows(plan, limit=unplaced_limit),
        # organisations the planner left out before placing anything: gates missing, not checked, blocked
        "left_out": [item.as_dict() for item in plan.left_out],
    }


# --- organisations, mailboxes, events, endpoints, import jobs ---------------------------------------------


@extend_schema_field(
    {
        "type": "object",
        "properties": {name: {"type": "boolean"} for name in Organisation.GATES},
        "additionalProperties": False,
        "description": "The readiness gates, each met (true) or not (false). The same object is read and written; "
        "a gate left out of a write is not met.",
    }
)
class GatesField(serializers.Field):
    """The readiness gates as one shape both ways: {"gate_mfa_enforced": true, ...}. A list of the met gates'
    names (the shape an older version took on POST) is still read."""

    default_error_messages = {
        "invalid": "Give an object of readiness gates with true or false values",
        "unknown": "Unknown readiness gates: {names}",
    }

    def to_representation(self, organisation) -> dict[str, bool]:
        return {name: bool(getattr(organisation, name)) for name in Organisation.GATES}

    def get_attribute(self, instance):
        return instance

    def to_internal_value(self, data) -> list[str]:
        if isinstance(data, dict):
            if not all(isinstance(v, bool) for v in data.values()):
                self.fail("invalid")
            names = [name for name, met in data.items() if met]
            unknown = set(data) - set(Organisation.GATES)
        elif isinstance(data, list) and all(isinstance(v, str) for v in data):
            names = list(data)
            unknown = set(data) - set(Organisation.GATES)
        else:
            self.fail("invalid")
        if unknown:
            self.fail("unknown", names=", ".join(sorted(unknown)))
        return names


class OrganisationSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="ods_code", read_only=True, allow_null=True)
    gates = GatesField(read_only=True)
    missing_gates = serializers.SerializerMethodField(
        help_text="The readiness gates the programme office requires that this organisation has not met"
    )

    class Meta:
        model = Organisation
        fields = [
            "ods_code",
            "name",
            "kind",
            "region",
            "status",
            "parent",
            "preferred_window",
            "priority",
            "gates",
            "stage",
            "stage_changed_at",
            "missing_gates",
            "enrolled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_missing_gates(self, organisation) -> list[str]:
        from migrations_app.selectors.readiness import required_gates

        if "required_gates" not in self.context:  # once per response, not once per organisation
            self.context["required_gates"] = required_gates()
        return organisation.missing_gates(self.context["required_gates"])


class ContactSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField()
    phone = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")


class OrganisationEnrolSerializer(serializers.Serializer):
    ods_code = serializers.CharField(max_length=9)
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=Organisation.Kind.choices)
    region = serializers.ChoiceField(choices=Organisation.Region.choices)
    parent = serializers.CharField(required=False, allow_blank=True, default="", help_text="ODS code")
    preferred_window = serializers.ChoiceField(
        choices=Organisation.WindowPreference.choices, default=Organisation.WindowPreference.ANY
    )
    primary_contact = ContactSerializer()
    technical_contact = ContactSerializer(required=False, allow_null=True, default=None)
    gates = GatesField(required=False, default=list)
    notes = serializers.CharField(required=False, allow_blank=True, default="")


def _blank_or(choices, help_text: str) -> serializers.CharField:
    """A read-only text field documented as "" or one of `choices`."""
    values = ["", *choices.values]

    @extend_schema_field({"type": "string", "enum": values})
    class BlankOr(serializers.CharField):
        pass

    return BlankOr(read_only=True, help_text=f"{help_text}: one of {', '.join(repr(v) for v in values)}")


class MailboxSerializer(serializers.ModelSerializer):
    organisation = serializers.SlugRelatedField(slug_field="ods_code", read_only=True)
    last_error_meaning = serializers.SerializerMethodField(help_text="last_error_code in plain English")
    last_error_action = serializers.SerializerMethodField(help_text="what to do about last_error_code")
    blocked_advice = serializers.SerializerMethodField(
        help_text="What a blocked mailbox's code means and what to do about it (empty unless blocked)"
    )
    # blank until the mailbox reaches its cutover / its switch: declared so the schema admits "" (DRF drops
    # allow_blank from read-only model fields)
    cutover_step = serializers.ChoiceField(
        choices=Mailbox.CutoverStep.choices, allow_blank=True, read_only=True
    )
    switch_status = serializers.ChoiceField(
        choices=Mailbox.SwitchStatus.choices, allow_blank=True, read_only=True
    )
    COMPUTED = ("organisation", "blocked_advice", "last_error_meaning", "last_error_action")

    class Meta:
        model = Mailbox
        fields = [
            "id",
            "email",
            "organisation",
            "display_name",
            "kind",
            "size_bytes",
            "item_count",
            "source_identity",
            "target_upn",
            "affinity_group",
            "wave",
            "state",
            "attempts",
            "last_error_code",
            "last_error_message",
            "last_error_meaning",
            "last_error_action",
            "bytes_copied",
            "items_copied",
            "paused",
            "carried_over",
            "skipped_items",
            "settings_report",
            "preflight_report",
            "blocked_code",
            "blocked_reason",
            "blocked_advice",
            "checked_at",
            "cutover_step",
            "switch_status",
            "switched_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_last_error_meaning(self, mailbox) -> str | None:
        why = explain(mailbox.last_error_code)  # errors_catalogue: one table for pages, API and CSVs
        return why and why.meaning

    def get_last_error_action(self, mailbox) -> str | None:
        why = explain(mailbox.last_error_code)
        return why and why.action

    def get_blocked_advice(self, mailbox) -> str:
        from migrations_app.services.readiness.codes import blocked_reason

        return blocked_reason(mailbox.blocked_code).text if mailbox.state == Mailbox.State.BLOCKED else ""

    def to_representation(self, mailbox):
        """The same output as the declared fields, read directly: a mailbox page is 100 of these per request
        and DRF's generic field-by-field path cost about 10 ms of CPU a page (bench/api.py). The declared
        fields still define the schema; test_the_fast_path_matches_the_declared_fields holds the two together."""
        fields = self.fields
        out = {}
        for name in self.Meta.fields:
            if name == "organisation":
                out[name] = mailbox.organisation.ods_code
            elif name == "wave":
                out[name] = mailbox.wave_id
            elif name in ("created_at", "updated_at", "checked_at", "switched_at"):
                value = getattr(mailbox, name)
                out[name] = None if value is None else fields[name].to_representation(value)
            elif name == "last_error_meaning":
                out[name] = self.get_last_error_meaning(mailbox)
            elif name == "last_error_action":
                out[name] = self.get_last_error_action(mailbox)
            elif name == "blocked_advice":
                out[name] = self.get_blocked_advice(mailbox)
            else:
                out[name] = getattr(mailbox, name)
        return out

    def to_representation_declared(self, mailbox):
        return super().to_representation(mailbox)


class EventSerializer(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    organisation = serializers.SlugRelatedField(slug_field="ods_code", read_only=True, allow_null=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "created_at",
            "action",
            "actor",
            "organisation",
            "mailbox",
            "wave",
            "subject",
            "from_state",
            "to_state",
            "message",
            "data",
        ]
        read_only_fields = fields


class EndpointSerializer(serializers.ModelSerializer):
    # Write-only: the credential is encrypted at rest and never sent back.
    secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, style={"input_type": "password"}
    )
    has_secret = serializers.SerializerMethodField()
    switch_secret = serializers.CharField(
        write_only=True, required=False, allow_blank=True, style={"input_type": "password"}
    )
    has_switch_secret = serializers.SerializerMethodField()

    class Meta:
        model = Endpoint
        fields = [
            "id",
            "name",
            "kind",
            "role",
            "address",
            "port",
            "security",
            "username",
            "secret",
            "has_secret",
            "options",
            "max_concurrency",
            "switch_method",
            "switch_address",
            "switch_username",
            "switch_secret",
            "has_switch_secret",
            "switch_sessions",
            "switch_timeout_seconds",
            "routing_domain",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "has_secret", "has_switch_secret", "created_at", "updated_at"]

    def get_has_secret(self, endpoint) -> bool:
        return bool(endpoint.secret)

    def get_has_switch_secret(self, endpoint) -> bool:
        return bool(endpoint.switch_secret)


class ImportJobSerializer(serializers.ModelSerializer):
    organisation = serializers.SlugRelatedField(slug_field="ods_code", read_only=True, allow_null=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:import-job-detail")
    ignored_columns = serializers.SerializerMethodField(
        help_text="Columns of the file the portal does not use: ignored, not a reason to reject it"
    )

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "url",
            "kind",
            "organisation",
            "filename",
            "status",
            "rows_total",
            "rows_valid",
            "rows_created",
            "rows_updated",
            "rows_unchanged",
            "error_count",
            "errors",
            "ignored_columns",
            "failure",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_ignored_columns(self, job) -> list[str]:
        return list((job.summary or {}).get("ignored_columns", []))


class WebhookSerializer(serializers.ModelSerializer):
    # Write-only: the signing secret is encrypted at rest and never sent back.
    secret = serializers.CharField(
        write_only=True,
        required=True,
        min_length=24,
        max_length=500,
        style={"input_type": "password"},
        help_text="A random string of 24+ characters, used to sign every delivery (HMAC-SHA256)",
    )
    organisation = serializers.SlugRelatedField(slug_field="ods_code", read_only=True)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=60),
        required=False,
        default=list,
        help_text='Event actions ("mailbox.migrated") or prefixes ending in "." ("mailbox."); empty: all',
    )

    class Meta:
        model = Webhook
        fields = [
            "id",
            "organisation",
            "url",
            "secret",
            "event_types",
            "active",
            "description",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "organisation", "created_at", "updated_at"]


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "kind",
            "message_id",
            "event",
            "status",
            "attempts",
            "http_status",
            "response_excerpt",
            "error",
            "duration_ms",
            "next_attempt_at",
            "last_attempt_at",
            "created_at",
            "payload",
        ]
        read_only_fields = fields


class ReadinessCheckSerializer(serializers.ModelSerializer):
    organisation = serializers.SlugRelatedField(slug_field="ods_code", read_only=True, allow_null=True)
    counts = serializers.SerializerMethodField()
    percent = serializers.IntegerField(read_only=True)

    class Meta:
        model = ReadinessCheck
        fields = [
            "id",
            "organisation",
            "wave",
            "status",
            "total",
            "counts",
            "percent",
            "failure",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_counts(self, check) -> dict[str, int]:
        return {"ready": check.ready, "blocked": check.blocked, "unchecked": check.unchecked}


class ReadinessCheckRequestSerializer(serializers.Serializer):
    mailboxes = serializers.ListField(
        child=serializers.IntegerField(
            min_value=1, max_value=2**63 - 1
        ),  # ids fit the column, on every database
        required=False,
        allow_empty=False,
        max_length=100_000,
        help_text="Check only these mailboxes of the organisation (ids); default: all of its mailboxes",
    )


class OrganisationCloseSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000)
