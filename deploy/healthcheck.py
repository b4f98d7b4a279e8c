"""The web container's health check: the app answers /health (which reaches the
database) as SITE_URL's host, on the port gunicorn listens on. Exit 0 if healthy."""

import os
import sys
import urllib.request
from urllib.parse import urlsplit

site = urlsplit(os.environ.get("LABQUEUE_SITE_URL", "http://127.0.0.1:8000"))
request = urllib.request.Request(
    "http://127.0.0.1:8000/health", headers={"Host": site.netloc}
)
try:
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        sys.exit(0 if answer.status == 200 else 1)
except OSError as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
