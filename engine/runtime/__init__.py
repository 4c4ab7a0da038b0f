"""The durable runtime: the store-backed orchestrator, the Dramatiq doorbell, workers, timers and the reconciler.

"The database is the truth; the queue is a doorbell": every event is recorded with the run's new state in one
transaction, and a message only says "look at this step". See docs/architecture.md.
"""
