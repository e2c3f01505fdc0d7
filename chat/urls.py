from __future__ import annotations

from django.urls import path

from chat.views import account, conversations, organize, sharing

app_name = "chat"

urlpatterns = [
    path("", conversations.index, name="index"),
    path("c/new/", conversations.conversation_create, name="conversation_create"),
    path("c/<int:conversation_id>/", conversations.conversation_detail, name="conversation"),
    path("c/<int:conversation_id>/messages/", conversations.message_create, name="message_create"),
    path("c/<int:conversation_id>/branch/", conversations.branch_switch, name="branch_switch"),
    path("c/<int:conversation_id>/rename/", conversations.conversation_rename, name="conversation_rename"),
    path(
        "c/<int:conversation_id>/settings/", conversations.conversation_settings, name="conversation_settings"
    ),
    path("c/<int:conversation_id>/delete/", conversations.conversation_delete, name="conversation_delete"),
    path("c/<int:conversation_id>/topbar/", conversations.conversation_topbar, name="conversation_topbar"),
    path("c/<int:conversation_id>/row/", organize.conversation_row, name="conversation_row"),
    path("c/<int:conversation_id>/pin/", organize.conversation_pin, name="conversation_pin"),
    path("c/<int:conversation_id>/archive/", organize.conversation_archive, name="conversation_archive"),
    path("c/<int:conversation_id>/move/", organize.conversation_move, name="conversation_move"),
    path("conversations/", organize.conversation_list_page, name="conversation_list"),
    path("archived/", organize.archived_list_page, name="archived"),
    path("projects/new/", organize.project_create, name="project_create"),
    path("p/<int:project_id>/", organize.project_detail, name="project"),
    path("p/<int:project_id>/new/", organize.project_conversation_create, name="project_conversation_create"),
    path("p/<int:project_id>/delete/", organize.project_delete, name="project_delete"),
    path("search/", conversations.search_page, name="search"),
    path("search/hits/", conversations.search_hits, name="search_hits"),
    path("settings/profile/", account.profile_page, name="profile"),
    path("settings/profile/notifications/", account.profile_notifications, name="profile_notifications"),
    path("c/<int:conversation_id>/export.md", sharing.conversation_export, {"kind": "md"}, name="export_md"),
    path(
        "c/<int:conversation_id>/export.json",
        sharing.conversation_export,
        {"kind": "json"},
        name="export_json",
    ),
    path("c/<int:conversation_id>/share/", sharing.share_create, name="share_create"),
    path("settings/data/", sharing.data_page, name="data"),
    path("settings/data/export.zip", sharing.account_export, name="account_export"),
    path("settings/shares/", sharing.shares_page, name="shares"),
    path("settings/shares/<int:share_id>/revoke/", sharing.share_revoke, name="share_revoke"),
    path("s/<str:token>/", sharing.share_detail, name="share"),
    path("s/<str:token>/continue/", sharing.share_continue, name="share_continue"),
    path("settings/api-keys/", account.api_keys_page, name="api_keys"),
    path("settings/api-keys/<int:key_id>/revoke/", account.api_key_revoke, name="api_key_revoke"),
    path("invite/<str:token>/", account.invitation_accept, name="invitation_accept"),
]
