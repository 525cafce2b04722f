"""The API reference pages render in a browser that can reach nothing but the bridge: Swagger
UI at /docs and ReDoc at /redoc load their scripts from the package, and nothing else is
asked for."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, Route, expect

from tests.browser.conftest import DESKTOP
from tests.e2e.harness import Stack


async def offline_page(browser: Browser, requested_elsewhere: list[str]) -> Page:
    """A page whose every request to a host other than 127.0.0.1 is refused and noted."""
    page = await browser.new_page(viewport=DESKTOP)

    async def only_the_bridge(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            requested_elsewhere.append(url)
            await route.abort()

    await page.route("**/*", only_the_bridge)
    return page


async def test_swagger_ui_renders_offline(stack: Stack, browser: Browser) -> None:
    elsewhere: list[str] = []
    page = await offline_page(browser, elsewhere)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(stack.url + "/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Chatbridge")
    operations = page.locator(".opblock")
    await expect(operations.first).to_be_visible()
    assert await operations.count() > 40
    # the action API is among them, and an operation opens with its answer's schema
    webhook = page.locator(".opblock-summary-path[data-path='/webhook/chatwoot']").first
    await webhook.click()
    await expect(page.locator(".responses-table").first).to_contain_text("200")
    await expect(page.locator(".opblock-summary-path[data-path='/api/v1/']").first).to_be_attached()
    assert elsewhere == [], elsewhere
    assert errors == [], errors
    await page.close()


async def test_redoc_renders_offline(stack: Stack, browser: Browser) -> None:
    elsewhere: list[str] = []
    page = await offline_page(browser, elsewhere)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(stack.url + "/redoc")
    await expect(page.locator("h1").first).to_contain_text("Chatbridge")
    await expect(page.get_by_text("Web chat action API", exact=False).first).to_be_attached()
    await expect(page.locator("[role=menuitem]").first).to_be_visible()
    assert await page.locator("[role=menuitem]").count() > 40
    assert elsewhere == [], elsewhere
    assert errors == [], errors
    await page.close()
