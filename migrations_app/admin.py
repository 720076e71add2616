from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from migrations_app.models import (
    Allocation,
    BlackoutPeriod,
    ClosedPeriod,
    Contact,
    Decision,
    Endpoint,
    Event,
    ImportJob,
    Invitation,
    Mailbox,
    Notification,
    NotificationSettings,
    NotificationTemplate,
    Organisation,
    OrganisationHold,
    OrganisationNotice,
    ProgrammeSettings,
    SupportRequest,
    User,
    Wave,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    # Entra ID users: role comes from their app roles at each sign-in (editing it here lasts until then);
    # organisations are assigned here unless ENTRA_ORGANISATIONS_CLAIM brings them in the token.
    fieldsets = (*BaseUserAdmin.fieldsets, ("Portal", {"fields": ("role", "organisations", "entra_oid")}))
    readonly_fields = ("entra_oid",)
    list_display = ("username", "email", "role", "is_active", "last_login")
    list_filter = ("role", "is_active")
    filter_horizontal = ("organisations", "groups", "user_permissions")


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0


class BlackoutInline(admin.TabularInline):
    model = BlackoutPeriod
    extra = 0


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("ods_code", "name", "kind", "region", "status", "priority")
    list_filter = ("status", "kind", "region", "preferred_window")
    search_fields = ("ods_code", "name")
    raw_id_fields = ("parent",)
    inlines = [ContactInline, BlackoutInline]


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    list_display = ("email", "display_name", "organisation", "kind", "state", "size_bytes", "wave")
    list_filter = ("state", "kind")
    # Prefix search on the unique address index; a contains-search over 2.1M rows would scan the table.
    search_fields = ("=email", "^display_name")
    raw_id_fields = ("organisation", "wave")
    show_full_result_count = False  # no COUNT(*) over 2.1 million rows on every page
    list_select_related = ("organisation", "wave")
    # The lifecycle moves only through the execution and planning services, which check the state in the
    # same UPDATE and write the Event; the admin would change it silently.
    readonly_fields = (
        "state",
        "wave",
        "lease",
        "attempts",
        "retry_at",
        "paused",
        "carried_over",
        "created_at",
        "updated_at",
        "heartbeat_at",
        "checkpoint",
    )


@admin.register(Wave)
class WaveAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "is_pilot", "starts_at", "ends_at", "status", "capacity_mailboxes")
    list_filter = ("status", "kind", "is_pilot")
    raw_id_fields = ("proposed_by",)
    # Approve, pause, resume, cancel: the wave services, which write the Decision and the Event.
    readonly_fields = ("status", "paused_from", "approved_by", "approved_at", "stamped_at")


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ("created_at", "wave", "organisation", "kind", "actor")
    list_filter = ("kind",)
    raw_id_fields = ("wave", "organisation", "actor")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "role", "address", "max_concurrency")
    list_filter = ("kind", "role")
    exclude = ("secret",)  # write it through the portal or API; never shown back


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only."""

    list_display = ("created_at", "action", "subject", "actor", "from_state", "to_state")
    list_filter = ("action",)
    search_fields = ("=subject",)
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "organisation", "filename", "status", "rows_valid", "error_count")
    list_filter = ("kind", "status")
    raw_id_fields = ("organisation", "created_by")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "organisation", "created_at", "expires_at", "accepted_at")
    exclude = ("token_hash",)
    raw_id_fields = ("organisation", "invited_by", "accepted_by")


# --- planning (issue 3) ----------------------------------------------------------------------------------------


@admin.register(ProgrammeSettings)
class ProgrammeSettingsAdmin(admin.ModelAdmin):
    """One row: the windows and planning rules. It cannot be added twice or deleted."""

    fieldsets = (
        (
            "Weekday evening windows",
            {
                "fields": (
                    "evening_days",
                    "evening_starts",
                    "evening_ends",
                    "evening_capacity_mailboxes",
                    "evening_capacity_bytes",
                )
            },
        ),
        (
            "Weekend windows",
            {
                "fields": (
                    "weekend_start_day",
                    "weekend_starts",
                    "weekend_end_day",
                    "weekend_ends",
                    "weekend_capacity_mailboxes",
                    "weekend_capacity_bytes",
                )
            },
        ),
        (
            "Planning",
            {
                "fields": (
                    "single_wave_organisation_max",
                    "large_organisation_chunk",
                    "pilot_mailboxes_per_organisation",
                    "planning_horizon_days",
                )
            },
        ),
        ("Approval", {"fields": ("go_required_from_every_organisation",)}),
    )

    def has_add_permission(self, request):
        return not ProgrammeSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ClosedPeriod)
class ClosedPeriodAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "starts_on", "ends_on")
    list_filter = ("kind",)
    date_hierarchy = "starts_on"


@admin.register(Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = ("wave", "organisation", "kind", "affinity_group", "planned_mailboxes", "planned_bytes")
    list_filter = ("kind",)
    raw_id_fields = ("wave", "organisation")
    show_full_result_count = False


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    """One row: when staff are told, Notify's limits, and the support-rate gate's thresholds."""

    fieldsets = (
        ("When staff are told", {"fields": ("first_notice_days", "second_notice_days", "day_of_hour")}),
        ("GOV.UK Notify's limits", {"fields": ("per_minute", "daily_allowance")}),
        (
            "The support-rate gate",
            {"fields": ("support_window_days", "support_rate_threshold", "failure_rate_threshold")},
        ),
    )

    def has_add_permission(self, request):
        return not NotificationSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(NotificationTemplate)
class NotificationTemplateAdmin(admin.ModelAdmin):
    list_display = ("moment", "subject", "enabled", "previewed_at")
    readonly_fields = ("previewed_at", "updated_by")


@admin.register(OrganisationNotice)
class OrganisationNoticeAdmin(admin.ModelAdmin):
    list_display = ("organisation", "updated_at")
    raw_id_fields = ("organisation",)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Millions of rows: no full count, searched by exact recipient."""

    list_display = ("id", "moment", "recipient", "status", "window_starts_at", "sent_at")
    list_filter = ("status", "moment")
    search_fields = ("=recipient",)
    raw_id_fields = ("mailbox",)
    show_full_result_count = False


@admin.register(SupportRequest)
class SupportRequestAdmin(admin.ModelAdmin):
    list_display = ("opened_at", "organisation", "email", "category", "source", "reference")
    list_filter = ("source", "category")
    search_fields = ("=email", "=reference")
    raw_id_fields = ("organisation", "mailbox")
    show_full_result_count = False


@admin.register(OrganisationHold)
class OrganisationHoldAdmin(admin.ModelAdmin):
    list_display = ("organisation", "wave", "created_at", "released_at", "release")
    raw_id_fields = ("organisation", "wave", "released_by")
