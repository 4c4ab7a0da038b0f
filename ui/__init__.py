"""The web UI: templates and view models for the chat + graph Builder. Independent of ``copilot``.

Built in the issue "The web UI".
"""
