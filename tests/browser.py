"""A real headless browser for the report tests: Debian's chromium + chromium-driver,
driven by selenium (installed by `make .venv/.installed-test`)."""
from __future__ import annotations

import shutil
import tempfile
from typing import Any, Dict, Optional

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"]


def find_chromium() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def open_page(html_path: str, screenshot: Optional[str] = None, width: int = 1280,
              height: int = 1600, full_page: bool = False) -> Dict[str, Any]:
    """Open file://html_path in headless chromium (fresh profile, no network).

    Returns:
        {"console": [browser log entries of level SEVERE or WARNING],
         "images": [{"src_prefix", "naturalWidth", "naturalHeight", "complete"}],
         "title", "text" (the page's visible text), "external" (URLs of resources the page
         loaded other than data: and its own file)}.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="flowprep-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = find_chromium()
    for f in CHROMIUM_FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        driver.get("file://" + html_path)
        driver.execute_script("return document.readyState")
        images = driver.execute_script(
            "return Array.from(document.images).map(i => ({src_prefix: i.src.slice(0, 22),"
            " naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,"
            " complete: i.complete}));")
        external = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('data:'));")
        console = [e for e in driver.get_log("browser")
                   if e.get("level") in ("SEVERE", "WARNING")]
        if screenshot:
            if full_page:
                h = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(width, h)
            driver.save_screenshot(screenshot)
        return {"console": console, "images": images, "title": driver.title,
                "text": driver.find_element("tag name", "body").text, "external": external}
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot_png(html_path: str, png_path: str, width: int = 1100, height: int = 2000,
                   out_width: int = 820, colours: int = 160) -> None:
    """A small PNG of the top of a page (docs/report.png): a browser screenshot of
    ``width`` x ``height`` CSS px, shrunk to ``out_width`` and reduced to ``colours``."""
    import os
    from PIL import Image
    tmp = png_path + ".full.png"
    seen = open_page(os.path.abspath(html_path), screenshot=tmp, width=width, height=height)
    if seen["console"]:
        raise SystemExit(f"console errors: {seen['console']}")
    im = Image.open(tmp).convert("RGB")
    im = im.resize((out_width, round(im.height * out_width / im.width)), Image.LANCZOS)
    im.quantize(colours, method=Image.Quantize.MEDIANCUT).save(png_path, optimize=True)
    os.unlink(tmp)


if __name__ == "__main__":  # python tests/browser.py demo_out/report.html docs/report.png
    import sys
    screenshot_png(sys.argv[1], sys.argv[2])
