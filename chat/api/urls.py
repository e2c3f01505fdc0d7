from __future__ import annotations

from django.urls import path

from chat.api import views

urlpatterns = [
    path("models", views.models_list, name="api_models"),
    path("models/<str:model>", views.model_detail, name="api_model"),
    path("chat/completions", views.chat_completions, name="api_chat_completions"),
    path("responses", views.responses_create, name="api_responses"),
    path("responses/<str:response_id>", views.response_detail, name="api_response"),
    path("responses/<str:response_id>/cancel", views.response_cancel, name="api_response_cancel"),
]
