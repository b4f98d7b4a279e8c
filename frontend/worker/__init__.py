"""The worker: the Celery tasks (``tasks.py``), starting runs (``start.py``), the
watcher that follows them (``watcher.py``), their end (``finish.py``), repairs
after lost hosts (``recovery.py``) and pipeline image checks (``images.py``).

It reaches feature code only through run kinds (``core/kinds.py``): a kind gives a
run's plan, and says whether its image is a pipeline's and whether it mails. No
feature imports the worker; the pages send it work by task name
(``core/taskq.py``).
"""
