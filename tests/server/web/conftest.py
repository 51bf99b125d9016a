import pytest


@pytest.fixture
def page(browser):
    """A fresh browser page (1440x900) for the test; a JavaScript error on it fails the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"
