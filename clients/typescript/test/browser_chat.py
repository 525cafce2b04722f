"""Drive the chat client in Chromium: ``python browser_chat.py <page url>``.

Opens the page (``test/browser.test.ts`` serves it: it imports ``dist/src/chat.js`` as a
browser would and talks to a real bridge), waits until the page sets ``window.done``, prints it
as JSON. Exit 77 when ``/usr/bin/chromium`` is missing; 1 with the page's console on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


async def main(url: str) -> int:
    from playwright.async_api import async_playwright

    console: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            await page.goto(url)
            try:
                await page.wait_for_function("window.done !== undefined", timeout=30_000)
            except Exception as exc:
                print(json.dumps({"error": str(exc), "console": console}))
                return 1
            print(json.dumps(await page.evaluate("window.done")))
            return 0
        finally:
            await browser.close()


if __name__ == "__main__":
    if not os.path.exists(CHROMIUM):
        sys.exit(77)
    sys.exit(asyncio.run(main(sys.argv[1])))
