"""A person at the chat app: Playwright driving Debian's chromium, one command at a time.

Usage: chat_browser.py      then one JSON command per line on stdin, one JSON reply per line on stdout:
  {"do": "open", "url": "http://HOST:7860/"}      -> {"login_page": bool, "chat_page": bool}
  {"do": "login", "username": U, "password": P}   -> {"login_page": bool, "chat_page": bool}
  {"do": "ask", "question": Q, "timeout": 120}    -> {"answer": text of the new assistant message,
                                                      "lengths": its lengths as the page showed them, ...}
  {"do": "clear"}                                 -> {"user_messages": n, "bot_messages": n}
  {"do": "screenshot", "path": P}                 -> {"path": P}
  {"do": "quit"}
A command that fails answers {"error": ..., "page_text": ...} and the driver stays usable.

Playwright cannot download its own browser here: it launches /usr/bin/chromium (the `chromium`
package, tests/setup/bootstrap.sh installs it), headless, with a fresh profile. Used by
tests/molecule/shared/test_clients.py, in the test host's network namespace or from outside (the LAN),
and by test_gateway.py through the gateway's https:// URL: with EDGE_LLAMA_BROWSER_CA=PATH the browser
trusts that CA certificate the way a user's Chromium on Linux does, from an NSS database in its home
($HOME/.pki/nssdb, made with certutil from libnss3-tools, in a home of its own), and no other CA.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-proxy-server"]
BOT, USER = "[data-testid=bot]", "[data-testid=user]"
# Gradio shows a component's status tracker while one of its events runs (the answer streaming).
BUSY = "[data-testid=status-tracker]:not(.hide)"
# Every text the newest assistant message shows, recorded by the page itself (no polling gaps).
WATCH = """() => {
    window.__edgeLlamaLengths = [];
    if (window.__edgeLlamaObserver) window.__edgeLlamaObserver.disconnect();
    const record = () => {
        const bots = document.querySelectorAll('%s');
        if (!bots.length) return;
        const n = bots[bots.length - 1].innerText.trim().length, seen = window.__edgeLlamaLengths;
        if (n && seen[seen.length - 1] !== n) seen.push(n);
    };
    window.__edgeLlamaObserver = new MutationObserver(record);
    window.__edgeLlamaObserver.observe(document.body, {subtree: true, childList: true, characterData: true});
}""" % BOT


class Chat:
    def __init__(self, page):
        self.page = page

    def state(self):
        page = self.page
        return {"login_page": page.locator("input[type=password]").count() > 0,
                "chat_page": page.get_by_label("Message", exact=True).count() > 0,
                "title": page.title(), "url": page.url}

    def wait_ready(self, timeout):
        either = self.page.get_by_label("Message", exact=True).or_(self.page.locator("input[type=password]"))
        either.first.wait_for(state="visible", timeout=timeout * 1000)

    def open(self, url, timeout=60):
        self.page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
        self.wait_ready(timeout)
        return self.state()

    def login(self, username, password, timeout=30):
        page = self.page
        page.get_by_label("username").fill(username)
        page.locator("input[type=password]").fill(password)
        # The error of an earlier wrong attempt stays on the form until the page changes: only a new
        # one is this attempt's answer.
        refused_before = "incorrect" in page.inner_text("body").lower()
        page.get_by_role("button", name="Login").click()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # a reload into the chat, or the login form with its error
            state = self.state()
            if state["chat_page"] or (not refused_before and "incorrect" in page.inner_text("body").lower()):
                break
            time.sleep(0.2)
        state = self.state()
        state["page_text"] = page.inner_text("body")[:500]
        return state

    def count(self, selector):
        return self.page.locator(selector).count()

    def ask(self, question, timeout=120):
        page = self.page
        before = self.count(BOT)
        page.evaluate(WATCH)
        box = page.get_by_label("Message", exact=True)
        box.fill(question)
        started = time.monotonic()
        box.press("Enter")
        first = text = None
        stable_since = None
        while time.monotonic() - started < timeout:
            time.sleep(0.1)
            if self.count(BOT) <= before:
                continue
            now = page.locator(BOT).last.inner_text().strip()
            if now and first is None:
                first = time.monotonic() - started
            busy = self.count(BUSY) > 0
            if now != text or busy or not now:
                text, stable_since = now, time.monotonic()
                continue
            if time.monotonic() - stable_since >= 0.5:  # done streaming and nothing changed since
                break
        else:
            raise TimeoutError("no complete answer within %ss (so far: %r)" % (timeout, text))
        return {"answer": text, "lengths": page.evaluate("() => window.__edgeLlamaLengths"),
                "first_text_s": round(first, 2), "seconds": round(time.monotonic() - started, 2),
                "user_messages": self.count(USER), "bot_messages": self.count(BOT),
                "question_shown": question in page.locator(USER).last.inner_text()}

    def clear(self, timeout=15):
        # The app's Clear button (the chatbot's own trash icon is labelled "Clear" too, without text).
        self.page.locator("button", has_text=re.compile(r"^\s*Clear\s*$")).click()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.count(BOT) + self.count(USER) > 0:
            time.sleep(0.1)
        return {"user_messages": self.count(USER), "bot_messages": self.count(BOT)}

    def screenshot(self, path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.page.screenshot(path=path, full_page=True)
        return {"path": path}


def reply(obj):
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def trust(base, ca):
    """A home whose NSS database trusts `ca` for TLS servers (certutil -t C,,): Chromium's trust store on
    Linux. Returns the home's path."""
    home = os.path.join(base, "home")
    nssdb = os.path.join(home, ".pki", "nssdb")
    os.makedirs(nssdb)
    subprocess.run(["certutil", "-N", "-d", "sql:" + nssdb, "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", "sql:" + nssdb, "-t", "C,,", "-n", "edge-llama site CA", "-i", ca],
                   check=True, capture_output=True)
    return home


def main():
    if not os.access(CHROMIUM, os.X_OK):
        reply({"error": "%s is missing: install Debian's chromium package (tests/setup/bootstrap.sh)" % CHROMIUM})
        return 2
    profile = tempfile.mkdtemp(prefix="edge-llama-chromium-")
    env = dict(os.environ)
    if os.environ.get("EDGE_LLAMA_BROWSER_CA"):
        env["HOME"] = trust(profile, os.environ["EDGE_LLAMA_BROWSER_CA"])
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                os.path.join(profile, "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
                viewport={"width": 1280, "height": 900}, locale="en-US", env=env)
            context.set_default_timeout(30000)
            chat = Chat(context.pages[0] if context.pages else context.new_page())
            reply({"ready": True, "browser": context.browser.version if context.browser else None})
            for line in sys.stdin:
                if not line.strip():
                    continue
                command = json.loads(line)
                action = command.pop("do")
                if action == "quit":
                    break
                try:
                    reply(getattr(chat, action)(**command))
                except Exception as exc:  # report, keep the browser for the next command
                    try:
                        text = chat.page.inner_text("body")[:2000]
                    except Exception:
                        text = None
                    reply({"error": "%s: %s" % (type(exc).__name__, exc), "page_text": text,
                           "traceback": traceback.format_exc()[-3000:]})
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
