from __future__ import annotations

from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("c/new/", views.conversation_create, name="conversation_create"),
    path("c/<int:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<int:conversation_id>/messages/", views.message_create, name="message_create"),
    path("c/<int:conversation_id>/rename/", views.conversation_rename, name="conversation_rename"),
    path("c/<int:conversation_id>/settings/", views.conversation_settings, name="conversation_settings"),
    path("c/<int:conversation_id>/delete/", views.conversation_delete, name="conversation_delete"),
    path("search/", views.search_page, name="search"),
    path("search/hits/", views.search_hits, name="search_hits"),
    path("settings/profile/", views.profile_page, name="profile"),
    path("settings/profile/notifications/", views.profile_notifications, name="profile_notifications"),
    path("settings/api-keys/", views.api_keys_page, name="api_keys"),
    path("settings/api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("invite/<str:token>/", views.invitation_accept, name="invitation_accept"),
]
