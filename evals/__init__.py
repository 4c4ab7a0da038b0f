"""Evaluation harnesses for Jules, the co-pilot (``ionflux eval …``); see docs/evals.md."""
