"""The service's infrastructure: settings, the queue client, request ids, limits, observability."""
