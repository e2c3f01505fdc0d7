"""The chat app's HTTP views, one module per area (chat.urls maps them): the chat page and search
(conversations), settings (account), export, import and share (sharing), the sidebar's pages, pins,
archives and projects (organize)."""
