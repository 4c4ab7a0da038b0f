"""FluxGraph, the workflow language: YAML -> typed model -> validation, canonical form, schema, diff.

Pure: no I/O library, no environment, no clock (an import-linter contract keeps it so). Entry points:
``engine.dsl.validator`` (``check_flow``/``load_flow``), ``engine.dsl.canonical`` (``version_id``/``to_yaml``),
``engine.dsl.expression`` (``parse``/``evaluate``), ``engine.dsl.schema``, ``engine.dsl.diff``.
"""
