"""Headless Chromium for tests: Debian's `chromium` driven by Debian's `chromium-driver` through
Selenium, with nothing downloaded at run time.

- The driver is /usr/bin/chromedriver, given explicitly: Selenium skips Selenium Manager (its
  downloader) when the Service names a driver. As a tripwire, SE_MANAGER_PATH points at a
  script that only records that it ran; `selenium_manager_ran()` tells.
- Flags that work as root in a container; a fresh profile folder per browser.
- Screenshots go to test-artifacts/screenshots/ (ignored by git), their paths printed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
PAGE_LOAD_TIMEOUT = 60  # seconds; the machine is shared and slow at times


def missing() -> str | None:
    """Why a browser cannot start here (None when it can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: run tests/ui/install.sh as root (tests/run.sh does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


class Browser:
    """One headless Chromium with its own profile; `close()` ends it and removes the profile."""

    def __init__(self, width: int = 1400, height: int = 1000):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = Path(tempfile.mkdtemp(prefix="locusts-chromium-"))
        self.tripwire = self.profile / "selenium-manager-ran"
        manager_stub = self.profile / "selenium-manager"
        manager_stub.write_text(f"#!/bin/sh\ntouch '{self.tripwire}'\nexit 1\n")
        manager_stub.chmod(0o755)
        os.environ["SE_MANAGER_PATH"] = str(manager_stub)  # must never run: see selenium_manager_ran()

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile / 'profile'}")
        options.add_argument(f"--window-size={width},{height}")
        self.service = Service(executable_path=CHROMEDRIVER, log_output=str(self.profile / "chromedriver.log"))
        self.driver = webdriver.Chrome(service=self.service, options=options)
        self.driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)

    def selenium_manager_ran(self) -> bool:
        return self.tripwire.exists()

    def screenshot(self, name: str, full_page: bool = False, max_height: int = 8000) -> Path:
        """Save a PNG under test-artifacts/screenshots/ and print its path."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        if full_page:
            import base64

            height = min(int(self.driver.execute_script("return document.documentElement.scrollHeight")), max_height)
            width = int(self.driver.execute_script("return document.documentElement.scrollWidth"))
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            })
            path.write_bytes(base64.b64decode(shot["data"]))
        else:
            self.driver.save_screenshot(str(path))
        print(f"\nscreenshot: {path}")
        return path

    def go_offline(self) -> None:
        """Cut the page's network (DevTools network emulation): any request fails."""
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0,
        })

    def close(self) -> None:
        try:
            self.driver.quit()  # ends chromium and the chromedriver process it started
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
