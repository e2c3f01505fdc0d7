from __future__ import annotations

from django.urls import path

from inference import views

app_name = "inference"

urlpatterns = [
    path("workers/", views.workers_dashboard, name="workers"),
    path("workers.json", views.workers_data, name="workers_data"),
]
