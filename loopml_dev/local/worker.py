"""One warm Lambda execution environment: a process that imports a handler once and serves invocations.

Run as a script (never imported as ``loopml_dev.local.worker`` in the child) so that nothing from the
repository is imported before ``sys.path`` is set the way Lambda sets it: the function's code, then its
layers, then the dependency layer (the venv's site-packages). Frames (``frames.py``, shared with the
runtime) on two dedicated pipes carry requests and responses; stdout and stderr stay free for the
handler and are forwarded by the parent with a ``[function:version]`` prefix.

Protocol (child side): after init, one ``{"type": "ready", "init_ms": ...}`` frame (or ``init_error``).
Per request: ``{"type": "result", "payload": str}`` or ``{"type": "error", "error": {...}}``, then,
after the post-invoke hooks ran, ``{"type": "idle"}``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any


def _sibling(name: str) -> ModuleType:
    """A module beside this script, loaded by path under a private name (the handler's imports stay its own)."""
    spec = importlib.util.spec_from_file_location(f"_loopml_local_{name}", Path(__file__).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"{name}.py is missing beside the worker")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


frames = _sibling("frames")
unshipped = _sibling("unshipped")


class LambdaContext:
    """The attributes and method handlers use from Lambda's context object."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.aws_request_id: str = request["request_id"]
        self.function_name: str = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version: str = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.invoked_function_arn: str = request["invoked_function_arn"]
        self.memory_limit_in_mb: int = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.log_group_name: str = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name: str = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = request.get("client_context")
        self._deadline_ms: int = request["deadline_ms"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        # Lambda's trace starts in the handler's module, not in the runtime calling it.
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:]),
    }


def _end_of_output() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, (frames.END_OF_OUTPUT + "\n").encode())


def _exit_with_parent() -> None:
    """A worker never outlives the stack, even a SIGKILLed one (pipes alone cannot tell mid-invoke)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _enforce_grants() -> None:
    """The function's declared grants, checked on every AWS call it makes (``grants.py`` beside this file)."""
    module = _sibling("grants")
    policy = os.environ.pop(module.ENV, None)
    if policy is not None:
        module.install(policy, os.environ["AWS_LAMBDA_FUNCTION_NAME"])


def main() -> None:
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    request_fd, response_fd = int(sys.argv[1]), int(sys.argv[2])
    code_dir, handler_spec = sys.argv[3], sys.argv[4]
    layer_dirs = json.loads(sys.argv[5])
    excluded = set(json.loads(sys.argv[6]))
    sys.path[:] = [code_dir, *layer_dirs] + [p for p in sys.path if os.path.realpath(p) not in excluded]
    os.chdir(code_dir)
    # what the venv has and the function's layers do not ship (pandas; on the slim layer scikit-learn too)
    unshipped.hide(os.environ.pop(unshipped.ENV, "").split(","))
    _enforce_grants()

    started = time.perf_counter()
    module_name, _, function_name = handler_spec.rpartition(".")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
        handler = getattr(module, function_name)
    except Exception as exc:  # an Init error fails the invocation; the next one starts a new environment
        traceback.print_exc()
        failure = _error(exc)
        if isinstance(exc, ImportError):
            failure["errorType"] = "Runtime.ImportModuleError"
            failure["errorMessage"] = f"Unable to import module '{module_name}': {exc}"
        elif isinstance(exc, SyntaxError):
            failure["errorType"] = "Runtime.UserCodeSyntaxError"
            failure["errorMessage"] = f"Syntax error in module '{module_name}': {exc}"
        elif isinstance(exc, AttributeError) and "module" in locals():
            failure["errorType"] = "Runtime.HandlerNotFound"
            failure["errorMessage"] = f"Handler '{function_name}' missing on module '{module_name}'"
        frames.write_frame(response_fd, {"type": "init_error", "error": failure})
        return
    try:
        from loopml.lifecycle import run_post_invoke  # from the layer the function references
    except ImportError:

        def run_post_invoke() -> None:
            return None

    init_ms = (time.perf_counter() - started) * 1000
    frames.write_frame(response_fd, {"type": "ready", "init_ms": init_ms})

    while True:
        try:
            request = frames.read_frame(request_fd)
        except frames.PeerExited:  # the runtime closed the pipe: this environment is done
            return
        context = LambdaContext(request)
        try:
            event = json.loads(request["payload"]) if request["payload"] else {}
            result = handler(event, context)
            payload = json.dumps(result)
        except Exception as exc:
            sys.stdout.flush()
            traceback.print_exc()
            _end_of_output()
            frames.write_frame(response_fd, {"type": "error", "error": _error(exc)})
        else:
            _end_of_output()
            frames.write_frame(response_fd, {"type": "result", "payload": payload})
        run_post_invoke()  # after the response: like an internal extension, outside the caller's latency
        sys.stdout.flush()
        sys.stderr.flush()
        frames.write_frame(response_fd, {"type": "idle"})


if __name__ == "__main__":
    main()
