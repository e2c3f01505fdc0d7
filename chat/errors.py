"""What a user must change before the app can do what they asked: each message says how."""

from __future__ import annotations


class ChatError(Exception):
    """A request the user must change; the message says how."""


class ReplyInFlight(ChatError):
    def __init__(self) -> None:
        super().__init__("This conversation is still answering. Wait for it or press Stop, then send again.")


class StaleEdit(ChatError):
    def __init__(self) -> None:
        super().__init__(
            "This message is not on the branch shown any more (another tab or device changed it). "
            "The conversation has been reloaded."
        )


class TooManyInFlight(ChatError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You already have {limit} {'reply' if limit == 1 else 'replies'} being written. "
            "Wait for one to finish, then send again."
        )


class ApiKeyRefused(ChatError):
    """An API request its key does not authorize; `status` is the HTTP answer (401, or 403 for a group).

    `reason` is the short cause the /v1/ endpoints put in their OpenAI-style error; the message adds what
    to do.
    """

    def __init__(self, reason: str, hint: str, *, status: int = 401) -> None:
        super().__init__(f"{reason[:1].upper()}{reason[1:]}: {hint}")
        self.reason = reason
        self.status = status


class ImportRefused(ChatError):
    """A file that was not imported: the message names the file, the place in it and what is wrong."""
