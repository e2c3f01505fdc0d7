"""Conversations in and out of files: this app's own JSON, its Markdown, ChatGPT's and Open WebUI's exports.

Plain Python, no Django (like chat/mathml.py): files in, `ConversationRecord`s out, and back. The web side
(chat/exports.py, chat/services/transfers.py) turns records into rows and rows into records.

- `records`: the records, the caps on one file, and `Refused`, the error that names what is wrong.
- `gptoss`: this app's JSON (docs/export-format.md), written and read.
- `chatgpt`, `openwebui`: readers of ChatGPT's `conversations.json` and Open WebUI's chat export.
- `markdown`: a conversation as a Markdown document.
- `files`: which format an uploaded file is (JSON or a zip of them), within the caps.
- `zipstream`: a zip written as it goes, for a response that streams it.
"""
