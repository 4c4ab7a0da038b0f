"""The composition root: the CLI today; settings, the HTTP app and worker entry points as they arrive.

The only layer that reads the environment, files given by the user and the clock on behalf of the engine.
"""
