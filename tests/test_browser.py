"""A person in a browser: the web chat page and the dashboard, with Debian's chromium.

The daemon runs as a subprocess with the default-like config (webchat + echo, a fresh token
file it creates itself). Screenshots go to ``docs/img/`` with ``SWITCHBOARD_SCREENSHOTS=1``,
else to the test's tmp dir. A missing chromium fails the test in CI (``CI`` set) and skips it
only on a developer machine.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon import Daemon
from tests.support import tool_unavailable
from tests.test_webchat import free_port

CHROMIUM = os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


@dataclass
class RunningDaemon:
    base: str
    token: str


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        tool_unavailable(f"chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        tool_unavailable("the playwright package is not installed (pip install playwright)")
    tmp = tmp_path_factory.mktemp("browser")
    port = free_port()
    token_file = tmp / "token"  # missing on purpose: the daemon creates it (mode 0600)
    config = tmp / "switchboard.toml"
    config.write_text(textwrap.dedent(f"""\
        [gateway]
        state_dir = "{tmp / 's'}"
        [gateway.control]
        listen = "127.0.0.1:{port}"
        token_file = "{token_file}"
        [handler]
        kind = "echo"
        [providers.webchat]
        dm_policy = "open"
        """))
    proc = Daemon(config)
    try:
        ready = proc.wait_event("webchat.ready", timeout=30)
        assert ready["url"] == f"http://127.0.0.1:{port}/chat"
        assert token_file.stat().st_mode & 0o777 == 0o600
        yield RunningDaemon(f"http://127.0.0.1:{port}", token_file.read_text().strip())
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser(daemon: RunningDaemon) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def screenshot_path(tmp_path: Path, name: str) -> Path:
    if os.environ.get("SWITCHBOARD_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        return DOCS_IMG / name
    return tmp_path / name


def test_webchat_page_asks_for_the_token_then_echoes_a_typed_message(daemon: RunningDaemon, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 900, "height": 640})
    try:
        page.goto(daemon.base + "/chat")
        expect(page.locator("#auth")).to_be_visible(timeout=10_000)  # the TCP listener wants the token
        page.fill("#token", daemon.token)
        page.click("#auth button[type=submit]")
        expect(page.locator("#status")).to_have_text("online", timeout=10_000)
        page.fill("#text", "Hello from a real browser")
        page.press("#text", "Enter")
        expect(page.locator(".msg.bot")).to_have_text("Hello from a real browser", timeout=10_000)
        expect(page.locator(".msg.me.sent")).to_have_count(1)
        # The token and the chat live in this tab's sessionStorage only.
        stored = page.evaluate("() => [sessionStorage.getItem('switchboard.token'), localStorage.length]")
        assert stored == [daemon.token, 0]
        page.screenshot(path=str(screenshot_path(tmp_path, "webchat.png")))
    finally:
        page.close()


def test_two_tabs_are_two_chats(daemon: RunningDaemon, browser, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context()
    try:
        tabs = [context.new_page(), context.new_page()]
        for n, tab in enumerate(tabs):
            tab.goto(daemon.base + "/chat")
            tab.fill("#token", daemon.token)
            tab.click("#auth button[type=submit]")
            expect(tab.locator("#status")).to_have_text("online", timeout=10_000)
            tab.fill("#text", f"tab {n}")
            tab.press("#text", "Enter")
            expect(tab.locator(".msg.bot")).to_have_text(f"tab {n}", timeout=10_000)
        expect(tabs[0].locator(".msg.bot")).to_have_count(1)
        ids = [tab.evaluate("() => sessionStorage.getItem('switchboard.chat')") for tab in tabs]
        assert ids[0] != ids[1]
    finally:
        context.close()


def test_dashboard_shows_the_webchat_account_running(daemon: RunningDaemon, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1100, "height": 640})
    try:
        page.goto(daemon.base + "/")
        token_input = page.locator("input[type=password]")
        if token_input.count():  # the dashboard asks for the token once, like the chat page
            token_input.first.fill(daemon.token)
            token_input.first.press("Enter")
        row = page.locator("tr", has_text="webchat")
        expect(row.first).to_contain_text("running", timeout=15_000)
        page.screenshot(path=str(screenshot_path(tmp_path, "dashboard.png")))
    finally:
        page.close()
