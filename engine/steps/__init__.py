"""Step executors: how each node type runs, looked up by the same name as its entry in the node catalog.

An executor is a plain function of a :class:`~engine.steps.call.StepCall` that returns the step's output (a JSON
value) or raises :class:`~engine.steps.call.StepFailure`. Built-ins register the same way extensions will
(``ExecutorRegistry.register``). Control types (foreach, approval, delay, flow.call) need no executor: the run
core carries them out itself.
"""
