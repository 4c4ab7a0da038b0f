"""The run core: a pure state machine over frozen values (``machine.advance``), and what it consumes and emits.

``plan`` compiles a validated flow; ``state`` holds a run; ``events`` come in, ``decisions`` go out. No I/O,
no clock, no environment: an import-linter contract keeps it so.
"""
