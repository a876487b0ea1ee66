"""Invoke a function from template.yaml the way `sam local invoke` does, without Docker.

The handler is resolved from the template (CodeUri + Handler), the layers' folders and the function's
folder go on the import path, and the environment is the template's (Globals merged, `Ref`s resolved to
local values) on top of the process environment. Each `LocalFunction` loads its own copy of the handler
module, so its per-container caches behave like one Lambda container's.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import itertools
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

from rapport import SERVICE_NAME

from rapport_local import PROJECT_DIR
from rapport_local.template import TEMPLATE, function_spec, load_template, parameter_defaults, resolve

_instances = itertools.count()


def _reopen_log_streams() -> None:
    """Point the functions' log handler at stdout again if the stream it was created with has closed.

    All functions log through one logger (the service's), whose handler is made once per process with
    the stdout of that moment; a test runner or a caller that redirected stdout then may have closed it
    since. In Lambda, stdout never changes.
    """
    for handler in logging.getLogger(SERVICE_NAME).handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
            handler.stream = sys.stdout  # assigned: setStream() would flush the closed stream


class FakeLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout_s: int, memory_mb: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._ends = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


class LocalFunction:
    def __init__(
        self,
        logical_id: str,
        *,
        parameters: dict[str, str] | None = None,
        resources: dict[str, str] | None = None,
        environment: dict[str, str] | None = None,
        template_path: Path = TEMPLATE,
        project_dir: Path = PROJECT_DIR,
    ) -> None:
        """`parameters` override the template's parameter defaults; `resources` give each referenced
        resource its local value (the table's name, "" for a secret); `environment` is laid on top."""
        template = load_template(template_path)
        self.spec = function_spec(template, logical_id, project_dir)
        refs = {**parameter_defaults(template), **(resources or {}), **(parameters or {})}
        refs.setdefault("AWS::Region", os.environ.get("AWS_REGION", "us-east-1"))
        refs.setdefault("AWS::StackName", "rapport-local")
        # Stack resources without a local stand-in: no hold-audio bucket (browser agents are offered
        # calls only when a test or scenario names one), the local SIP media application's id.
        refs.setdefault("HoldAudioBucket", "")
        refs.setdefault("SipMediaApplication.SipMediaApplicationId", "local-sma")
        # The agent page's stand-ins (`rapport agent-page`): the development page-token key, no grace
        # queue (the local gateway runs the grace check itself), the socket named by the environment.
        refs.setdefault("PageTokenSecret", "")
        refs.setdefault("AgentPageGraceQueue", "")
        refs.setdefault("AgentPageSocket", "local")
        refs.setdefault("AWS::URLSuffix", "amazonaws.com")
        self.environment = {
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.spec.memory_mb),
            **{name: resolve(value, refs) for name, value in self.spec.environment.items()},
            **(environment or {}),
        }
        self.module = self._load()
        function_name = self.spec.handler.rpartition(".")[2]
        self._handler = getattr(self.module, function_name)

    def _load(self) -> ModuleType:
        module_file, _, _ = self.spec.handler.rpartition(".")
        for folder in [*self.spec.layer_dirs, self.spec.code_dir]:
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
        path = self.spec.code_dir / f"{module_file.replace('.', '/')}.py"
        name = f"_rapport_fn_{self.spec.logical_id}_{next(_instances)}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        with mock.patch.dict(os.environ, self.environment):
            spec.loader.exec_module(module)
        return module

    def context(self) -> FakeLambdaContext:
        return FakeLambdaContext(self.spec.logical_id, self.spec.timeout, self.spec.memory_mb)

    @contextlib.contextmanager
    def environment_applied(self) -> Iterator[None]:
        """The function's environment on this process, for `handle` calls from many threads."""
        with mock.patch.dict(os.environ, self.environment):
            yield

    def handle(self, event: Any) -> Any:
        """Run the handler once, inside `environment_applied()` (thread-safe; `invoke` is not)."""
        return self.run(copy.deepcopy(event))

    def run(self, event: Any, context: FakeLambdaContext | None = None) -> Any:
        """`handle` without the copy that stands in for Lambda's JSON decoding: for timing the handler
        alone (the caller must not reuse `event`, and may make the context beforehand)."""
        _reopen_log_streams()
        return self._handler(event, context or self.context())

    def invoke_concurrently(self, events: list[Any], workers: int) -> list[Any]:
        """Invoke once per event from `workers` threads, like that many warm containers sharing one
        module; results keep the events' order."""
        with self.environment_applied(), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self.handle, events))

    def invoke(self, event: Any) -> Any:
        """Run the handler once with a copy of `event`, as Lambda would, and return its result."""
        with self.environment_applied():
            return self.handle(event)
