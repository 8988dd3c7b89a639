"""Work that runs after a response has been returned, before the execution environment is frozen.

Capture records are flushed here so that sending them to SQS never adds to the caller's latency.
On AWS an internal Lambda extension (a thread registered with the Extensions API) holds the
environment until the hooks finish; the local stack's worker calls ``run_post_invoke`` itself after
writing the response. Either way the hooks run once per invocation, in the same process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.request
from collections.abc import Callable

_hooks: list[Callable[[], None]] = []
_invocation_done = threading.Event()
_extension_id: str | None = None
_log = logging.getLogger(__name__)


def register_post_invoke(hook: Callable[[], None]) -> None:
    """Run ``hook`` after every invocation; registering twice is a no-op."""
    if hook not in _hooks:
        _hooks.append(hook)
    _start_extension_if_on_lambda()


_restore_hooks: list[Callable[[], None]] = []


def register_after_restore(hook: Callable[[], None]) -> None:
    """Run ``hook`` in every environment Lambda SnapStart restores from the snapshot (the runtime's
    ``snapshot_restore_py``); where there is no SnapStart it runs only through ``run_after_restore``."""
    if hook in _restore_hooks:
        return
    _restore_hooks.append(hook)
    try:
        from snapshot_restore_py import register_after_restore as on_restore  # the Lambda runtime's
    except ImportError:
        return
    on_restore(hook)


def run_after_restore() -> None:
    """What the runtime does after a restore (tests and drills call it)."""
    for hook in list(_restore_hooks):
        hook()


def run_post_invoke() -> None:
    for hook in list(_hooks):
        try:
            hook()
        except Exception:  # a hook must never break the next invocation
            _log.exception("post-invoke hook %s failed", getattr(hook, "__name__", hook))


def invocation_finished() -> None:
    """Called by the handler when its response is ready.

    With the extension registered the hooks run after the response is returned; the local stack's
    worker runs them itself; anywhere else (tests, a failed registration) they run now.
    """
    if _extension_id is not None:
        _invocation_done.set()
    elif not os.environ.get("LOOPML_LOCAL_RUNTIME"):
        run_post_invoke()


def _start_extension_if_on_lambda() -> None:
    """Registers during Init (extensions may only register then), then waits for invokes in a thread."""
    global _extension_id
    api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if _extension_id is not None or not api or os.environ.get("LOOPML_LOCAL_RUNTIME"):
        return
    base = f"http://{api}/2020-01-01/extension"
    request = urllib.request.Request(
        f"{base}/register",
        data=json.dumps({"events": ["INVOKE"]}).encode(),
        headers={"Lambda-Extension-Name": "loopml-post-invoke"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            extension_id = response.headers["Lambda-Extension-Identifier"]
    except OSError:
        _log.warning("could not register the post-invoke extension; hooks run in the handler instead")
        return
    _extension_id = extension_id
    threading.Thread(target=_extension_loop, args=(base, extension_id), name="loopml-post-invoke", daemon=True).start()


def _extension_loop(base: str, extension_id: str) -> None:
    """Lambda freezes the environment only after every extension has asked for its next event."""
    while True:
        next_request = urllib.request.Request(
            f"{base}/event/next", headers={"Lambda-Extension-Identifier": extension_id}
        )
        with urllib.request.urlopen(next_request) as response:  # blocks until the next invoke
            json.load(response)
        _invocation_done.wait()
        _invocation_done.clear()
        run_post_invoke()
