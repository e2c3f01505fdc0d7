"""Writes: every change to conversations, messages and users happens here, each in one transaction.

- conversations: create, rename, change settings, delete; titles.
- messages: the user's side of a send: validate, send, edit, regenerate.
- replies: the reply's lifecycle: create it queued and enqueue it, queue places, then start, announce, notice,
  save progress, finish, fail while queued, interrupt, release and cancel (Stop).
- invitations: accept an invitation.
- accounts: user-level writes (end a user's sessions).
- api_keys: create and revoke a user's API keys; authenticate an API request by its key.
- transfers: import the conversations of a file, all or none.
- shares: share a snapshot of a conversation, revoke it, continue it as the reader's copy.

Import the module you need (`from chat.services import replies`); nothing is re-exported here.
"""
