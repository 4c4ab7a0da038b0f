"""Running one step attempt: look up the executor, call it, turn every failure into a ``StepError``.

Whatever an executor raises, the run gets a result: a ``StepFailure`` keeps its code and retryability, an
expression error keeps its code, and anything unexpected becomes ``step.crashed`` (retryable: a bug or a
transient fault in the executor should not lose the run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.core.simulate import SimulatedStep
from engine.core.state import StepError
from engine.dsl.expression import ExpressionError
from engine.steps.call import StepCall, StepFailure
from engine.steps.registry import ExecutorRegistry, MissingExecutorError


def run_step(executors: ExecutorRegistry, call: StepCall) -> Any:
    """The step's output, or a StepError (never raises for a failing step)."""
    try:
        return executors.get(call.node_type)(call)
    except StepFailure as e:
        return e.to_step_error(call.key)
    except MissingExecutorError as e:
        return StepError(e.code, f"{call.key}: {e.message} ({e.hint})")
    except ExpressionError as e:
        return StepError(e.code, f"{call.key}: {e.message}")
    except Exception as e:  # an executor bug must fail the step, not the worker
        return StepError("step.crashed", f"{call.key}: {type(e).__name__}: {e}", retryable=True)


def simulated(executors: ExecutorRegistry) -> Callable[[SimulatedStep], Any]:
    """An executor for :class:`engine.core.simulate.Simulation` that runs the real executors."""

    def execute(step: SimulatedStep) -> Any:
        call = StepCall(step.key, step.attempt, step.node_type, step.with_, step.context)
        return run_step(executors, call)

    return execute
