from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from migrations_app.models import (
    BlackoutPeriod,
    Contact,
    Decision,
    Endpoint,
    Event,
    ImportJob,
    Invitation,
    Mailbox,
    Organisation,
    User,
    Wave,
)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = (*BaseUserAdmin.fieldsets, ("Portal", {"fields": ("role", "organisations")}))
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
    readonly_fields = ("created_at", "updated_at", "heartbeat_at", "checkpoint")


@admin.register(Wave)
class WaveAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "is_pilot", "starts_at", "ends_at", "status", "capacity_mailboxes")
    list_filter = ("status", "kind", "is_pilot")
    raw_id_fields = ("proposed_by",)


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
