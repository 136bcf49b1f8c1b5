"""The dashboard as a person uses it: Debian's chromium, headless, through chromium-driver.

Every step leaves a screenshot in the artifacts folder, so a failure can be seen
as the browser saw it.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: What Horizon shows instead of a page when a view fails.
ERROR_PAGES = re.compile(r"Something went wrong|Server error|Page Not Found|Forbidden \(403\)")


class Dashboard:
    def __init__(self, driver: webdriver.Chrome, base_url: str, artifacts: Path) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.artifacts = artifacts
        self.shots = 0

    # --- looking -----------------------------------------------------------

    def shot(self, name: str) -> Path:
        self.shots += 1
        path = self.artifacts / f"{self.shots:02d}-{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        """Poll `check` until it returns something true; fail naming `what` and a screenshot."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                found = check()
            except WebDriverException as exc:
                found, last = None, exc
            if found:
                return found
            time.sleep(0.5)
        picture = self.shot("timeout-" + re.sub(r"\W+", "-", what)[:40])
        raise AssertionError(f"dashboard: timed out waiting for {what} (see {picture}); {last}")

    def element(self, css: str, timeout: float = 60) -> WebElement:
        found: WebElement = self.wait(css, lambda: self._visible(By.CSS_SELECTOR, css), timeout)
        return found

    def xpath(self, path: str, timeout: float = 60) -> WebElement:
        found: WebElement = self.wait(path, lambda: self._visible(By.XPATH, path), timeout)
        return found

    def _visible(self, by: str, selector: str) -> WebElement | None:
        candidates: list[WebElement] = self.driver.find_elements(by, selector)
        return next((item for item in candidates if item.is_displayed()), None)

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def problems(self) -> list[str]:
        """Error pages and error messages on the current page."""
        found = [match.group(0) for match in ERROR_PAGES.finditer(self.text())]
        for alert in self.driver.find_elements(By.CSS_SELECTOR, ".alert-danger"):
            if alert.is_displayed() and alert.text.strip():
                found.append(alert.text.strip())
        return found

    # --- doing -------------------------------------------------------------

    def open(self, path: str, name: str) -> None:
        """Go to a page, wait until it has loaded, screenshot it, and fail on any error."""
        self.driver.get(self.base_url + path)
        self.wait(f"{path} to load", self.loaded)
        self.shot(name)
        assert not self.problems(), f"dashboard: {path} shows {self.problems()}"

    def loaded(self) -> bool:
        ready = self.driver.execute_script("return document.readyState") == "complete"
        # Angular pages fetch their tables after the page itself has loaded.
        spinning = self.driver.find_elements(By.CSS_SELECTOR, ".loader-inline, .modal-backdrop")
        return ready and not any(item.is_displayed() for item in spinning)

    def login(self, user: str, password: str) -> None:
        self.driver.get(self.base_url + "/auth/login/")
        self.element("#id_username").send_keys(user)
        self.element("#id_password").send_keys(password)
        self.shot(f"login-{user}")
        self.element("#loginBtn").click()
        self.wait(f"{user} to be logged in", lambda: "/auth/login" not in self.driver.current_url)
        self.wait(f"{user}'s first page to load", self.loaded)
        self.shot(f"logged-in-{user}")
        assert not self.problems(), f"dashboard: after login as {user}: {self.problems()}"

    def logout(self) -> None:
        """Sign out from the user menu (its Sign Out button posts the logout form)."""
        self.element(".dropdown-toggle .fa-user").click()
        self.shot("user-menu")
        self.element("form[action$='/auth/logout/'] button").click()
        self.element("#id_username")
        self.shot("logged-out")

    def submit_form(self, fields: dict[str, str], name: str) -> None:
        """Fill a Django form and submit it: text fields by id, selects by the text of
        an option (Horizon's themed dropdowns hide the real select, which is set here
        the way a click on the dropdown sets it)."""
        for field, value in fields.items():
            element = self._by_id(field)
            if element.tag_name == "select":
                chosen = self.driver.execute_script(
                    "const s = arguments[0];"
                    "const o = [...s.options].find(o => o.text.includes(arguments[1]));"
                    "if (!o) return null; s.value = o.value;"
                    "s.dispatchEvent(new Event('change', {bubbles: true}));"
                    "if (window.jQuery) jQuery(s).trigger('change'); return o.text;",
                    element,
                    value,
                )
                assert chosen, f"dashboard: #{field} has no option {value!r}"
            else:
                element = self.element(f"#{field}")
                element.clear()
                element.send_keys(value)
        self.shot(name)
        self.element("form [type=submit]").click()
        self.wait(f"{name} to be submitted", self.loaded)

    def _by_id(self, ident: str) -> WebElement:
        """An element by id, shown or not."""
        found: list[WebElement] = self.wait(
            f"#{ident}", lambda: self.driver.find_elements(By.ID, ident)
        )
        return found[0]

    def menu_links(self, prefix: str) -> list[str]:
        """Every panel of the side menu under `prefix` (e.g. /project/)."""
        links = self.driver.find_elements(By.CSS_SELECTOR, "a.openstack-panel")
        paths = []
        for link in links:
            href = str(link.get_attribute("href") or "")
            path = href.removeprefix(self.base_url)
            if path.startswith(prefix):
                paths.append(path)
        return list(dict.fromkeys(paths))


def trusting(ca_file: str, home: Path) -> dict[str, str]:
    """An environment whose HOME holds an NSS database trusting the CA (only it:
    chromium on Linux takes its trust anchors from there and the system store)."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{database}", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{database}", "-t", "C,,", "-n", "cloud-ca", "-i", ca_file],
        check=True,
    )
    return {**os.environ, "HOME": str(home)}


@contextmanager
def chromium(base_url: str, artifacts: Path, ca_file: str) -> Iterator[Dashboard]:
    """Headless chromium that trusts the cloud's CA and nothing it was not given."""
    artifacts.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="dashboard-browser-"))
    environment = trusting(ca_file, home)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        # Root in a container: chromium's sandbox needs user namespaces it may not get.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        # The dashboard is on this machine; a proxy from the environment must not intercept.
        "--no-proxy-server",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={home / 'profile'}")
    service = Service(CHROMEDRIVER, env=environment)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(120)
    try:
        yield Dashboard(driver, base_url, artifacts)
    finally:
        driver.quit()
