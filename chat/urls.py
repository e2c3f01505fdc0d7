from __future__ import annotations

from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("c/new/", views.conversation_create, name="conversation_create"),
    path("c/<int:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<int:conversation_id>/messages/", views.message_create, name="message_create"),
    path("c/<int:conversation_id>/branch/", views.branch_switch, name="branch_switch"),
    path("c/<int:conversation_id>/rename/", views.conversation_rename, name="conversation_rename"),
    path("c/<int:conversation_id>/settings/", views.conversation_settings, name="conversation_settings"),
    path("c/<int:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path("c/<int:conversation_id>/row/", views.conversation_row, name="conversation_row"),
    path("c/<int:conversation_id>/pin/", views.conversation_pin, name="conversation_pin"),
    path("c/<int:conversation_id>/archive/", views.conversation_archive, name="conversation_archive"),
    path("c/<int:conversation_id>/move/", views.conversation_move, name="conversation_move"),
    path("conversations/", views.conversation_list_page, name="conversation_list"),
    path("archived/", views.archived_list_page, name="archived"),
    path("projects/new/", views.project_create, name="project_create"),
    path("p/<int:project_id>/", views.project_detail, name="project"),
    path("p/<int:project_id>/new/", views.project_conversation_create, name="project_conversation_create"),
    path("p/<int:project_id>/delete/", views.project_delete, name="project_delete"),
    path("search/", views.search_page, name="search"),
    path("search/hits/", views.search_hits, name="search_hits"),
    path("settings/profile/", views.profile_page, name="profile"),
    path("settings/profile/notifications/", views.profile_notifications, name="profile_notifications"),
    path("c/<int:conversation_id>/export.md", views.conversation_export, {"kind": "md"}, name="export_md"),
    path(
        "c/<int:conversation_id>/export.json", views.conversation_export, {"kind": "json"}, name="export_json"
    ),
    path("c/<int:conversation_id>/share/", views.share_create, name="share_create"),
    path("settings/data/", views.data_page, name="data"),
    path("settings/data/export.zip", views.account_export, name="account_export"),
    path("settings/shares/", views.shares_page, name="shares"),
    path("settings/shares/<int:share_id>/revoke/", views.share_revoke, name="share_revoke"),
    path("s/<str:token>/", views.share_detail, name="share"),
    path("s/<str:token>/continue/", views.share_continue, name="share_continue"),
    path("settings/api-keys/", views.api_keys_page, name="api_keys"),
    path("settings/api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("invite/<str:token>/", views.invitation_accept, name="invitation_accept"),
]
