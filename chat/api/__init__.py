"""The OpenAI-compatible API under /v1/: a third face of the chat services, beside the chat page and its
socket.

errors.py: OpenAI's error shape; completions.py: a Chat Completions request read into the services' terms
and the reply written back in OpenAI's; follow.py: a reply's events as they come; views.py: the endpoints.
"""
