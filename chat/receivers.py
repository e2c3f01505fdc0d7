"""Signal receivers, connected when the app is ready: open sockets close as soon as their session ends (or
their user's password changes), not only at the socket watcher's next round."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db.models.signals import post_delete, post_save

from chat import events

post_delete.connect(events.session_deleted, sender=Session, dispatch_uid="chat.session_deleted")
post_save.connect(events.user_saved, sender=get_user_model(), dispatch_uid="chat.user_saved")
