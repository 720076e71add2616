from django.urls import path, register_converter

from migrations_app.views import (
    accounts,
    audit,
    dashboard,
    entra,
    exports,
    failures,
    imports,
    mailbox_settings,
    mailboxes,
    notification_templates,
    notify_receipts,
    organisations,
    pages,
    planning,
    public,
    public_help,
    readiness,
    support,
    tokens,
    waves,
)


class OdsCodeConverter:
    """Upper-case ODS codes only, so /organisations/enrol/ can never be mistaken for a code."""

    regex = "[A-Z0-9]{1,9}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(OdsCodeConverter, "ods")

urlpatterns = [
    # first: four requests in five are this poll (thousands of trust admins, every 3 s), and Django tries the
    # patterns in order (it was ~120th: a fifth of the poll's CPU went on the patterns before it). Nothing
    # before it matched its paths ("waves/<int:pk>/<str:action>/" comes after it either way).
    path("waves/<int:pk>/live/", waves.wave_live, name="wave_live"),
    path("", pages.home, name="home"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("when-does-my-mailbox-move/", public.when_does_my_mailbox_move, name="public_when"),
    path("when-does-my-mailbox-move/help/", public_help.help_request, name="public_help"),
    path("notifications/templates/", notification_templates.template_list, name="notification_templates"),
    path(
        "notifications/templates/<str:moment>/",
        notification_templates.template_detail,
        name="notification_template",
    ),
    path("support/", support.support_list, name="support_list"),
    path("organisations/<ods:ods_code>/hold/go/", support.hold_go_view, name="organisation_hold_go"),
    path(
        "organisations/<ods:ods_code>/hold/override/",
        support.hold_override_view,
        name="organisation_hold_override",
    ),
    path("organisations/<ods:ods_code>/notice/", support.notice_view, name="organisation_notice"),
    path(
        "organisations/<ods:ods_code>/tickets/",
        support.tickets_upload_view,
        name="organisation_tickets_upload",
    ),
    path("notify/receipts", notify_receipts.notify_receipts, name="notify_receipts"),
    path("mailboxes/", mailboxes.mailbox_search_view, name="mailbox_search"),
    path("mailboxes/export.csv", mailboxes.mailbox_search_csv, name="mailbox_search_csv"),
    path("mailboxes/<int:pk>/", mailboxes.mailbox_detail, name="mailbox_detail"),
    path("mailboxes/<int:pk>/retry/", mailboxes.mailbox_retry_view, name="mailbox_retry"),
    path("mailboxes/<int:pk>/roll-back/", mailboxes.mailbox_rollback_view, name="mailbox_rollback"),
    path("mailboxes/<int:pk>/pause/", mailboxes.mailbox_pause_view, name="mailbox_pause"),
    path("mailboxes/<int:pk>/resume/", mailboxes.mailbox_resume_view, name="mailbox_resume"),
    path("mailboxes/<int:pk>/cancel/", mailboxes.mailbox_cancel_view, name="mailbox_cancel"),
    path("mailboxes/<int:pk>/retire/", mailboxes.mailbox_retire_view, name="mailbox_retire"),
    path("mailboxes/<int:pk>/reinstate/", mailboxes.mailbox_reinstate_view, name="mailbox_reinstate"),
    path(
        "organisations/<ods:ods_code>/readiness-check/",
        readiness.organisation_readiness_check_view,
        name="organisation_readiness_check",
    ),
    path(
        "organisations/<ods:ods_code>/blocked.csv",
        readiness.organisation_blocked_csv,
        name="organisation_blocked_csv",
    ),
    path("organisations/<ods:ods_code>/close/", readiness.organisation_close_view, name="organisation_close"),
    path(
        "organisations/<ods:ods_code>/mailbox-settings.csv",
        mailbox_settings.organisation_settings_csv,
        name="organisation_settings_csv",
    ),
    path(
        "readiness-checks/<int:pk>/progress/",
        readiness.readiness_check_progress,
        name="readiness_check_progress",
    ),
    path(
        "mailboxes/<int:pk>/switch-confirm/",
        mailboxes.mailbox_switch_confirm_view,
        name="mailbox_switch_confirm",
    ),
    path("mailboxes/<int:pk>/unswitch/", mailboxes.mailbox_unswitch_view, name="mailbox_unswitch"),
    path("failures/", failures.failure_list, name="failure_list"),
    path("failures/export.csv", failures.failure_csv, name="failure_csv"),
    path("failures/retry/", failures.failure_retry, name="failure_retry"),
    path("audit/", audit.audit_log, name="audit_log"),
    path("audit/export.csv", audit.audit_csv, name="audit_csv"),
    path("exports/", exports.export_create, name="export_create"),
    path("exports/<int:pk>/", exports.export_detail, name="export_detail"),
    path("exports/<int:pk>/progress/", exports.export_progress_fragment, name="export_progress"),
    path("exports/<int:pk>/download/", exports.export_download, name="export_download"),
    path("sign-in/", accounts.SignInView.as_view(), name="login"),
    path("sign-in/entra/", entra.entra_start, name="entra_start"),
    path("sign-in/entra/callback/", entra.entra_callback, name="entra_callback"),
    path("sign-out/", accounts.sign_out, name="sign_out"),
    path("api-tokens/", tokens.token_list, name="token_list"),
    path("api-tokens/<int:pk>/revoke/", tokens.token_revoke_view, name="token_revoke"),
    path("invitations/<str:token>/", accounts.invitation_accept_view, name="invitation_accept"),
    path("organisations/", organisations.organisation_list, name="organisation_list"),
    path("organisations/export.csv", organisations.organisation_list_csv, name="organisation_list_csv"),
    path("organisations/enrol/", organisations.organisation_enrol_view, name="organisation_enrol"),
    path("organisations/invite/", organisations.organisation_invite_view, name="organisation_invite"),
    path("organisations/<ods:ods_code>/", organisations.organisation_detail, name="organisation_detail"),
    path("organisations/<ods:ods_code>/edit/", organisations.organisation_edit, name="organisation_edit"),
    path(
        "organisations/<ods:ods_code>/mailboxes/",
        organisations.organisation_inventory,
        name="organisation_inventory",
    ),
    path(
        "organisations/<ods:ods_code>/mailboxes.csv",
        organisations.organisation_inventory_csv,
        name="organisation_inventory_csv",
    ),
    path(
        "organisations/<ods:ods_code>/progress/",
        organisations.organisation_progress_fragment,
        name="organisation_progress",
    ),
    path(
        "organisations/<ods:ods_code>/imports/<str:kind>/",
        imports.import_upload,
        name="import_upload",
    ),
    path("imports/", imports.import_list, name="import_list"),
    path("imports/examples/<str:kind>.csv", imports.import_template, name="import_template"),
    path("imports/<int:pk>/", imports.import_detail, name="import_detail"),
    path("imports/<int:pk>/progress/", imports.import_progress_fragment, name="import_progress"),
    path("imports/<int:pk>/retry/", imports.import_retry, name="import_retry"),
    path("imports/<int:pk>/retire-leavers/", imports.import_retire_leavers, name="import_retire_leavers"),
    path("affinity/", imports.affinity_report, name="affinity_report"),
    # waves: the timeline, one wave and its actions, moves, the planner and pilots
    path("waves/", waves.wave_list, name="wave_list"),
    path("waves/export.csv", waves.wave_list_csv, name="wave_list_csv"),
    path("waves/planner/", planning.planner, name="wave_planner"),
    path("waves/planner/commit/", planning.planner_commit_view, name="wave_planner_commit"),
    path("waves/pilot/", planning.pilot_create_view, name="wave_pilot"),
    path("waves/settings/", planning.programme_settings_view, name="programme_settings"),
    path(
        "waves/settings/closed/<int:pk>/remove/",
        planning.closed_period_remove_view,
        name="closed_period_remove",
    ),
    path("waves/<int:pk>/", waves.wave_detail, name="wave_detail"),
    path("waves/<int:pk>/retry-failures/", waves.wave_retry_failures_view, name="wave_retry_failures"),
    path("waves/<int:pk>/mailboxes.csv", waves.wave_mailboxes_csv, name="wave_mailboxes_csv"),
    path("waves/<int:pk>/mailbox-settings.csv", mailbox_settings.wave_settings_csv, name="wave_settings_csv"),
    path("waves/<int:pk>/move/", waves.wave_move, name="wave_move"),
    path("waves/<int:pk>/move-mailbox/", waves.wave_move_mailbox_view, name="wave_move_mailbox"),
    path(
        "waves/<int:pk>/place-carried-over/",
        waves.wave_place_carried_over_view,
        name="wave_place_carried_over",
    ),
    path("waves/<int:pk>/<str:action>/", waves.wave_action, name="wave_action"),
]
