"""The operator console in a real browser: Debian's chromium driven by Selenium through
chromium-driver, against a running node that delivers to a real Orthanc.

The node analyses the demo's two head CT studies. Its results go to a PACS (Orthanc) and to an
archive whose Orthanc is not started yet, so the archive's deliveries end dead-lettered. In the
browser an admin logs in, finds the positive study, opens it, sees the job timeline and a preview
with the overlay, replays a dead-lettered delivery once the archive is up and sees it delivered,
and logs out; then a viewer opens the same study and sees no patient name. Every page is
screenshotted (under the test's tmp folder, and under $INFERNODE_SCREENSHOTS when set).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from infernode.console.auth import hash_password
from infernode.samples import write_sample_studies
from infernode.sender import dicom_files
from infernode.settings import load_settings
from tests.e2e.e2e_support import REPO, deliveries, jobs, running_node
from tests.support.net import free_port
from tests.support.peers.dcmtk import storescu
from tests.support.peers.orthanc import running_orthanc
from tests.support.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
USERS = {"ada": ("admin", "admin-pass-1"), "vera": ("viewer", "viewer-pass-1")}


def _browser() -> Any:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "chromium and chromium-driver (Debian) are needed for the console browser test"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


class Shots:
    def __init__(self, driver: Any, folder: Path) -> None:
        self.driver, self.folder = driver, folder
        folder.mkdir(parents=True)
        extra = os.environ.get("INFERNODE_SCREENSHOTS")
        self.extra = Path(extra) if extra else None
        self.count = 0

    def take(self, name: str) -> None:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), name
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.extra / path.name)


def _settings(folder: Path, pacs_port: int, archive_port: int, web_port: int) -> Any:
    destinations = [
        {"type": "facade"},
        {"type": "dicom", "name": "pacs", "host": "127.0.0.1", "port": pacs_port,
         "called_ae": "ORTHANC"},
        {"type": "dicom", "name": "archive", "host": "127.0.0.1", "port": archive_port,
         "called_ae": "ARCHIVE", "connect_timeout_s": 2},
    ]
    settings = load_settings(
        None, data_dir=str(folder), database={"url": f"sqlite:///{folder / 'infernode.db'}"},
        dicom={"port": 0, "spool_dir": str(folder / "spool"), "min_free_bytes": 0,
               "quiet_period_s": 3.0, "assembly_poll_s": 0.2},
        web={"enabled": True, "host": "127.0.0.1", "port": web_port},
        inference={"model_paths": [str(REPO / "models")]},
        workers={"delivery": {"destinations": destinations, "poll_interval_s": 0.3,
                              # the archive is down: dead-lettered within a second or two
                              "backoff": {"base_s": 0.2, "give_up_after_s": 1.0,
                                          "jitter": 0.0}}},
        console={"users": [{"name": n, "role": r, "password_hash": hash_password(p)}
                           for n, (r, p) in USERS.items()]},
    )
    rules = [r.model_copy(update={"quiet_period_s": 3.0}) for r in settings.workers.rules]
    settings.workers = settings.workers.model_copy(update={"rules": rules})
    return settings


def _log_in(driver: Any, base: str, user: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    assert driver.current_url.endswith("/login")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(USERS[user][1])
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: "Overview" in driver.title, timeout=15, what="the overview page")


def _follow(driver: Any, element: Any) -> None:
    """Clicks a link or submit button and waits until the next page has replaced this one, so
    nothing is read from the page being left (a click returns before the navigation ends).

    The page being left is marked with a property on its window, which a new document does not
    have. While the navigation runs, chromedriver may answer any command with a transient error
    (a stale element, or "node does not belong to the document"), so an error means: not yet."""
    from selenium.common.exceptions import WebDriverException

    driver.execute_script("window.__infernodeLeaving = true")
    element.click()

    def replaced() -> bool:
        try:
            return bool(driver.execute_script(
                "return window.__infernodeLeaving === undefined"
                " && document.readyState === 'complete'"))
        except WebDriverException:
            return False

    wait_until(replaced, timeout=30, what="the next page", every=0.05)


def _png(driver: Any, url: str) -> np.ndarray:
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    response = httpx.get(url, cookies=cookies, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)


def test_console_in_a_real_browser(tmp_path):

    studies = write_sample_studies(tmp_path / "samples", with_mr=False)
    positive, normal = studies[0][0], studies[1][0]  # the subdural phantom, the normal one
    archive_port, web_port = free_port(), free_port()
    with running_orthanc(tmp_path / "pacs") as pacs, \
            running_node(_settings(tmp_path / "node", pacs.dicom_port, archive_port,
                                   web_port)) as node:
        for folder in ("study1", "study2"):
            files = dicom_files(tmp_path / "samples" / folder)
            assert storescu(node.server.port, files).returncode == 0
        wanted = {positive.study_instance_uid, normal.study_instance_uid}

        def settled() -> bool:
            found = jobs(node)
            rows = deliveries(node)
            return (wanted <= {u for u, j in found.items() if j["state"] == "succeeded"}
                    and wanted <= {r["study_instance_uid"] for r in rows}
                    and all(r["state"] == ("dead" if r["destination"] == "archive"
                                           else "delivered") for r in rows))

        wait_until(settled, timeout=240, what="both studies analysed, archive dead-lettered",
                   every=0.5)
        with running_orthanc(tmp_path / "archive", aet="ARCHIVE",
                             extra={"DicomPort": archive_port}):
            driver = _browser()
            try:
                _browse(driver, Shots(driver, tmp_path / "screenshots"),
                        f"http://127.0.0.1:{web_port}", positive, node)
            finally:
                driver.quit()


def _browse(driver: Any, shots: Shots, base: str, positive: Any, node: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    uid = positive.study_instance_uid
    driver.get(base + "/")
    shots.take("login")
    _log_in(driver, base, "ada")
    wait_until(lambda: "Studies waiting" in driver.page_source, timeout=10, what="overview")
    shots.take("overview")

    # find the positive study
    driver.get(base + "/studies")
    Select(driver.find_element(By.NAME, "result")).select_by_visible_text("positive")
    _follow(driver, driver.find_element(By.ID, "search"))
    links = driver.find_elements(By.CSS_SELECTOR, "a.study-link")
    assert [link.text for link in links] == [positive.accession_number]
    shots.take("studies")
    _follow(driver, links[0])

    # its page: timeline, routing explained, preview with the overlay
    assert uid in driver.page_source
    stages = driver.find_elements(By.CSS_SELECTOR, "ol.timeline li.done .stage")
    assert [s.text for s in stages] == ["received", "complete", "queued", "started", "run",
                                     "encoded"]
    assert "MATCHED" in driver.find_element(By.CLASS_NAME, "explanation").text
    assert driver.find_element(By.ID, "patient-name").text == positive.patient_name
    overlays = driver.find_elements(By.CSS_SELECTOR, "figure.preview img.overlay")
    assert overlays, "no preview on the positive study's page"
    wait_until(lambda: driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", overlays[0]),
        timeout=15, what="the overlay image loaded")
    shots.take("study")
    driver.execute_script("arguments[0].scrollIntoView()", overlays[0])
    shots.take("study-previews")
    original = _png(driver, overlays[0].get_attribute("src").replace("overlay", "original"))
    overlay = _png(driver, overlays[0].get_attribute("src"))
    assert original.shape == overlay.shape
    grey = (original[..., 0] == original[..., 1]) & (original[..., 1] == original[..., 2])
    coloured = (overlay[..., 0] != overlay[..., 1]) | (overlay[..., 1] != overlay[..., 2])
    assert grey.all() and coloured.sum() > 20  # the mask outline drawn in colour

    # replay a dead-lettered delivery to the archive, now up, and see it delivered
    driver.get(base + "/deliveries?state=dead&destination=archive")
    rows = driver.find_elements(By.CSS_SELECTOR, "#deliveries tr[id^=delivery-]")
    assert rows
    delivery_id = rows[0].get_attribute("id").removeprefix("delivery-")
    shots.take("dead-letters")
    _follow(driver, rows[0].find_element(By.LINK_TEXT, "replay"))
    shots.take("confirm")
    _follow(driver, driver.find_element(By.ID, "confirm"))
    assert "pending again" in driver.find_element(By.ID, "message").text

    def delivered() -> bool:
        driver.get(base + "/deliveries?state=delivered&destination=archive")
        return bool(driver.find_elements(By.ID, f"delivery-{delivery_id}"))

    wait_until(delivered, timeout=60, what="the replayed delivery delivered", every=1.0)
    shots.take("delivered")
    for page, marker in (("/jobs", "Jobs"), ("/models", "Model cards"),
                         ("/routing", "Rules"), ("/config", "Effective settings")):
        driver.get(base + page)
        assert marker in driver.page_source
        shots.take(page.strip("/"))
    _follow(driver, driver.find_element(By.ID, "logout"))
    assert driver.current_url.endswith("/login")
    driver.get(base + f"/studies/{uid}")
    assert driver.current_url.endswith("/login")  # the session is over

    # a viewer sees the study, never the patient's name
    _log_in(driver, base, "vera")
    driver.get(base + f"/studies/{uid}")
    assert uid in driver.page_source
    for value in (positive.patient_name, positive.patient_name.replace("^", " "),
                  positive.patient_id, positive.accession_number):
        assert value not in driver.page_source
    assert driver.find_element(By.ID, "patient-name").text == "•••"
    shots.take("viewer-study")
    assert shots.count >= 13
