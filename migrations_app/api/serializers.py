"""Shapes of the wave, planner and decision API. Validation of input only: the services decide."""

from rest_framework import serializers

from migrations_app.models import Decision, Wave
from migrations_app.selectors.waves import plan_unplaced_rows
from migrations_app.services.planning import wave_name


class WaveSerializer(serializers.ModelSerializer):
    proposed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
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


class WaveOrganisationSerializer(serializers.Serializer):
    ods_code = serializers.CharField(source="organisation.ods_code")
    name = serializers.CharField(source="organisation.name")
    mailboxes = serializers.IntegerField()
    bytes = serializers.IntegerField()
    response = serializers.CharField()


class DecisionSerializer(serializers.ModelSerializer):
    organisation = serializers.SlugRelatedField(slug_field="ods_code", read_only=True)
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Decision
        fields = ["id", "wave", "organisation", "kind", "actor", "reason", "created_at"]
        read_only_fields = fields


class ActionSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    organisation = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="ODS code (go, no-go)"
    )


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
    }
