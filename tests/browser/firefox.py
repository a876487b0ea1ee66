"""One page in Debian's Firefox, for the tests: `firefox_driver.mjs` (puppeteer-core over WebDriver BiDi)
in a Node process, sent one JSON command a line. Playwright cannot drive a stock Firefox (it needs its own
build, which no registry here offers); WebDriver BiDi is Firefox's own remote protocol."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from browser.page_desk import PROJECT_DIR

DRIVER = Path(__file__).with_name("firefox_driver.mjs")
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox") or "/usr/bin/firefox-esr"
ANSWER_SECONDS = 60.0
"""The longest any one command may take (starting Firefox on a busy machine included)."""


class Firefox:
    """`with Firefox() as firefox:`; each method sends one command and returns its answer."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            ["node", str(DRIVER)],
            cwd=PROJECT_DIR,
            env={**os.environ, "RAPPORT_FIREFOX": FIREFOX},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._answers: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._answers.put(line)
        self._answers.put("")  # the driver ended

    def send(self, command: str, **parameters: Any) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"command": command, **parameters}) + "\n")
        self._process.stdin.flush()
        try:
            line = self._answers.get(timeout=ANSWER_SECONDS)
        except queue.Empty:
            raise AssertionError(f"Firefox did not answer {command} in {ANSWER_SECONDS:.0f} s") from None
        if not line:
            error = self._process.stderr.read() if self._process.stderr else ""
            raise AssertionError(f"the Firefox driver ended: {error[-2000:]}")
        answer = json.loads(line)
        if not answer["ok"]:
            raise AssertionError(f"{command}: {answer['error']}")
        return answer.get("value")

    def open(self, url: str, init: str) -> None:
        self.send("open", url=url, init=init)

    def wait(self, selector: str, **expected: Any) -> None:
        """Until `selector` shows `text` (exact) or `contains`, or is `hidden` or `gone`; or fail."""
        self.send("wait", selector=selector, **expected)

    def press(self, key: str) -> None:
        self.send("press", key=key)

    def focused(self, selector: str) -> bool:
        return bool(self.send("focused", selector=selector))

    def attribute(self, selector: str, name: str) -> str | None:
        value = self.send("attribute", selector=selector, name=name)
        return str(value) if value is not None else None

    def evaluate(self, expression: str) -> Any:
        return self.send("evaluate", expression=expression)

    def close(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()  # the driver closes the browser and ends
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Firefox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
