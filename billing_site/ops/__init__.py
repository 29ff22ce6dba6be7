"""What a production team runs the service with: health probes, Prometheus metrics, request ids in logs and
Celery tasks, opt-in error tracking (README, "Health, metrics and logs").

It sits beside the settings, above every app: it may import any of them, none imports it.
"""
