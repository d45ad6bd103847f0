"""The web chat in a real browser: headless Chromium (Playwright) types a message and reads the streamed reply.

Needs ``pip install playwright`` and a Chromium at /usr/bin/chromium (Debian: ``apt-get install chromium``);
skipped otherwise. Playwright's own browser download is not used.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytest.importorskip("gradio")

CHROMIUM = Path(os.environ.get("ADAPTERBOT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MESSAGE = "i feel sad today"

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

# Checked before any fixture is built (the toy skills take a while to train).
pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ADAPTERBOT_CHROMIUM)"),
]


@pytest.fixture
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]{2,}", text)


def test_chat_in_the_browser(browser, tiny_bot, tmp_path):
    from ui.app import launch
    from ui.chat import display_scores, manager_threshold, skill_label

    expected = tiny_bot.respond([MESSAGE], skill="auto")  # greedy and deterministic: what the page must show
    label = skill_label(expected, forced=False, threshold=manager_threshold(tiny_bot))
    demo = launch(tiny_bot, port=free_port(), prevent_thread_lock=True, quiet=True)
    outside: list[str] = []
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
        page.goto(demo.local_url, wait_until="domcontentloaded")
        page.get_by_text("Adapter-Bot", exact=True).wait_for(timeout=30_000)
        box = page.locator("#ab-message textarea")
        box.wait_for(timeout=30_000)
        box.fill(MESSAGE)
        box.press("Enter")

        chat = page.locator("#ab-chatbot")
        chat.get_by_text(MESSAGE, exact=True).wait_for(timeout=30_000)
        chat.get_by_text(label, exact=True).wait_for(timeout=60_000)
        # The turn is over when the label's thought shows its duration, e.g. "(0.4s)".
        page.wait_for_function("() => document.querySelector('#ab-chatbot .duration') !== null", timeout=60_000)
        top = max(display_scores(expected.scores).items(), key=lambda kv: kv[1])[0]
        page.locator("#ab-scores").get_by_text(top, exact=True).first.wait_for(timeout=30_000)  # the panel follows the turn
        page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)
        if os.environ.get("ADAPTERBOT_UI_SCREENSHOT"):
            page.screenshot(path=os.environ["ADAPTERBOT_UI_SCREENSHOT"], full_page=True)

        assert chat.get_by_text(label, exact=True).is_visible()
        bot_messages = chat.locator("[data-testid=bot]")
        reply = bot_messages.nth(bot_messages.count() - 1)
        assert reply.is_visible()
        shown = reply.inner_text()
        if words(expected.text):
            assert words(expected.text) == words(shown), (expected.text, shown)
        else:
            assert shown.strip()
        assert box.input_value() == ""
        assert (tmp_path / "ui.png").stat().st_size > 10_000
        assert not outside, f"the page fetched from outside: {outside}"
    finally:
        demo.close()


def test_a_long_paste_is_kept_and_refused_by_name(browser, tiny_bot):
    from ui.app import launch

    long = "my printer will not print " * 200  # 5,200 characters: over the 4,000 limit
    demo = launch(tiny_bot, port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(demo.local_url, wait_until="domcontentloaded")
        box = page.locator("#ab-message textarea")
        box.wait_for(timeout=30_000)
        box.fill(long)
        assert len(box.input_value()) == len(long)  # the browser cut nothing
        box.press("Enter")
        # shown on the message box itself, by the chat event's validator
        page.locator("#ab-message").get_by_text(f"The message has {len(long.strip()):,} characters, over the limit of 4,000"
                                                ).wait_for(timeout=30_000)
        assert box.input_value() == long  # still there to shorten and resend
        assert page.locator("#ab-chatbot [data-testid=user]").count() == 0  # no turn was added
        box.fill(MESSAGE)
        box.press("Enter")
        page.locator("#ab-chatbot").get_by_text(MESSAGE, exact=True).wait_for(timeout=30_000)  # the fixed message goes
    finally:
        demo.close()
