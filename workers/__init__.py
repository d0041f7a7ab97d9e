"""Routing, jobs, the Celery app, the read -> infer -> encode pipeline and the delivery outbox."""
