"""The IONFLUX engine: the FluxGraph language, the node catalog and (later) the run core and its adapters.

Layering (enforced by import-linter, see pyproject.toml): ``engine`` imports nothing from ``api``, ``ui`` or
``copilot``; ``engine.dsl`` and ``engine.nodetypes`` are pure (no I/O library, no environment, no clock).
"""
