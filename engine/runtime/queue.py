"""The doorbell: a Dramatiq actor whose message says "step K of run R, attempt A, may be ready".

Messages carry no data and decide nothing: a worker claims the step in the database before running it, so a
lost, duplicated or redelivered message never loses or doubles a result. Redis when ``IONFLUX_REDIS_URL`` is set;
otherwise Dramatiq's in-process StubBroker, with the same actor and the same worker code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications

log = logging.getLogger("ionflux.queue")
QUEUE = "steps"
ACTOR = "ionflux_step"

Handler = Callable[[str, str, int], None]


class Doorbell:
    def __init__(self, handler: Handler, *, redis_url: str | None = None, namespace: str = "ionflux") -> None:
        # No TimeLimit middleware: step timeouts are the flow's (durable timers), not the queue's. Retries stay,
        # for infrastructure errors (the database away for a moment): the step is claimed again after a backoff.
        middleware = [AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), Retries(max_retries=200)]
        self.broker: dramatiq.Broker
        if redis_url:
            # heartbeat_timeout: how soon Redis hands a dead consumer's unacked messages to others (the reconciler
            # covers the same case from the database side)
            self.broker = RedisBroker(  # type: ignore[no-untyped-call]
                url=redis_url, namespace=namespace, middleware=middleware, heartbeat_timeout=15000
            )
        else:
            self.broker = StubBroker(middleware=middleware)
        self.embedded = not redis_url
        self.actor = dramatiq.actor(
            broker=self.broker, actor_name=ACTOR, queue_name=QUEUE, min_backoff=200, max_backoff=10_000
        )(handler)
        self.broker.declare_queue(QUEUE)

    def ring(self, run_id: str, key: str, attempt: int) -> None:
        try:
            self.actor.send(run_id, key, attempt)
        except Exception as e:  # the step is recorded as queued; the reconciler rings again later
            log.warning("could not enqueue %s/%s#%d (%s); the reconciler will retry", run_id, key, attempt, e)

    def start_worker(self, threads: int) -> dramatiq.Worker:
        worker = dramatiq.Worker(self.broker, queues={QUEUE}, worker_threads=threads, worker_timeout=20)
        worker.start()
        return worker

    def close(self) -> None:
        self.broker.close()
        if isinstance(self.broker, RedisBroker):
            # RedisBroker.close() is a no-op in Dramatiq 1.x: without this its pooled sockets stay open until the
            # garbage collector finds them (and a ResourceWarning surfaces in whatever code runs then)
            self.broker.client.close()
            self.broker.client.connection_pool.disconnect()
