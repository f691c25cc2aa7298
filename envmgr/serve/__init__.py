"""`stemsep serve`: a long-lived host for apps. The durable job queue (queue.py), the scheduler that runs
it with warm workers (scheduler.py, workers.py), what a client may name (spec.py, paths.py) and the
front ends: the loopback HTTP API (http_app.py) and StemSep's app contract over stdio. See docs/serve.md."""
