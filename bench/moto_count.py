"""Count the AWS API requests that reach the moto server, by service and action.

The benchmark runs music_devkit.moto's ThreadedMotoServer in its own process. Every
request reaches moto's WSGI application (DomainDispatcherApplication); wrapping its
__call__ counts each one as it arrives, independently of what the client thinks it sent
(retries and paginated pages count once each). The action is read from where the AWS
protocols put it: the X-Amz-Target header (JSON protocols: SSM), the form body or query
string `Action=` (query protocols: EC2, IAM, STS), or method + path for S3's REST API.
moto's own /moto-api/ control calls are not counted.
"""
from __future__ import annotations

import collections
import contextlib
import io
import re
import threading
import urllib.parse

_lock = threading.Lock()
_counts: collections.Counter = collections.Counter()
_installed = False
_SCOPE = re.compile(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/")


def _describe(environ: dict) -> tuple[str, str] | None:
    path = environ.get("PATH_INFO", "")
    if path.startswith("/moto-api"):
        return None
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = match.group(1) if match else "?"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return service, target.split(".")[-1]
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if "Action" in query:
        return service, query["Action"][0]
    if environ.get("REQUEST_METHOD") == "POST" and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return service, form["Action"][0]
    return service, f"{environ.get('REQUEST_METHOD')} {'bucket' if path.count('/') <= 1 else 'object'}"


def install() -> None:
    """Wrap moto's WSGI dispatcher (call before the server handles requests)."""
    global _installed
    if _installed:
        return
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__

    def counted(self, environ, start_response):
        key = _describe(environ)
        if key is not None:
            with _lock:
                _counts[key] += 1
        return original(self, environ, start_response)

    DomainDispatcherApplication.__call__ = counted
    _installed = True


@contextlib.contextmanager
def counting():
    """Yield a dict filled, on exit, with the requests made inside the block."""
    with _lock:
        before = collections.Counter(_counts)
    found: dict = {}
    try:
        yield found
    finally:
        with _lock:
            diff = _counts - before
        found["total"] = sum(diff.values())
        found["by_action"] = {f"{svc}:{act}": n for (svc, act), n in sorted(diff.items())}
