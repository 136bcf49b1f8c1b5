"""The dashboard in a real browser: what a demo user and the admin do in it.

Screenshots of every step stay in test-artifacts/dashboard/ after the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from selenium.webdriver.common.by import By

from dietstack.ops.verify import TINY_IMAGE
from dietstack.services import horizon

from . import browser
from .conftest import run_dietstack
from .test_deploy import deployed_env, openstack, wait_until

pytestmark = pytest.mark.integration
ARTIFACTS = Path("test-artifacts") / "dashboard"

SERVER = "dash-server"
VOLUME = "dash-volume"
STACK = "dash-stack"
#: A stack of what a project may always make: a network with a subnet.
TEMPLATE = yaml.safe_dump(
    {
        "heat_template_version": "2021-04-16",
        "resources": {
            "net": {"type": "OS::Neutron::Net"},
            "subnet": {
                "type": "OS::Neutron::Subnet",
                "properties": {"network": {"get_resource": "net"}, "cidr": "10.77.0.0/24"},
            },
        },
    }
)


def password(cloud: Path, user: str) -> str:
    result = run_dietstack("password", user, config=cloud)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def ca_file(cloud: Path, tmp_path: Path) -> str:
    """The cloud's CA as `dietstack ca` gives it to a user for their browser."""
    result = run_dietstack("ca", config=cloud)
    assert result.returncode == 0 and "BEGIN CERTIFICATE" in result.stdout, result.stderr
    assert "SHA-256 fingerprint" in result.stderr
    path = tmp_path / "cloud-ca.pem"
    path.write_text(result.stdout)
    return str(path)


@pytest.fixture
def dashboard(cloud: Path, ca_file: str) -> Iterator[browser.Dashboard]:
    url = horizon.url(deployed_env(cloud))
    assert url.startswith("https://")
    with browser.chromium(url, ARTIFACTS, ca_file) as ui:
        yield ui
    print(f"dashboard screenshots: {ARTIFACTS.resolve()}")


def test_the_plain_port_redirects_and_https_pages_keep_browsers_on_https(
    cloud: Path, ca_file: str
) -> None:
    env = deployed_env(cloud)
    plain = f"http://{env.control_ip}:{horizon.port(env)}/auth/login/?next=/project/"
    moved = requests.get(plain, allow_redirects=False, timeout=30)
    assert moved.status_code == 301
    assert moved.headers["Location"] == horizon.url(env, "/auth/login/") + "?next=/project/"
    # A Host header of the client's choosing is not sent back.
    forged = requests.get(
        plain, headers={"Host": "evil.example"}, allow_redirects=False, timeout=30
    )
    assert forged.headers["Location"].startswith(horizon.url(env))
    page = requests.get(horizon.url(env, "/auth/login/"), verify=ca_file, timeout=60)
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    cookies = {cookie.name: cookie for cookie in page.cookies}
    assert cookies["csrftoken"].secure
    # Without the cloud's CA the certificate is refused (no public CA signed it).
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(horizon.url(env, "/auth/login/"), timeout=30)


@pytest.fixture
def cleanup() -> Iterator[None]:
    """Whatever the browser made goes, so later tests start from an empty project."""
    yield
    openstack("demo", "stack", "delete", "--yes", "--wait", STACK, check=False)
    openstack("demo", "server", "delete", "--wait", SERVER, check=False)
    openstack("demo", "volume", "delete", VOLUME, check=False)
    wait_until(
        "the dashboard's volume to go",
        lambda: VOLUME not in openstack("demo", "volume", "list", "-f", "value", "-c", "Name"),
    )


def row(ui: browser.Dashboard, page: str, name: str, wanted: str, timeout: float = 300) -> str:
    """Reload a table page until the row of `name` shows `wanted`; returns the row's id."""

    def shows() -> str | None:
        ui.driver.get(ui.base_url + page)
        for found in ui.driver.find_elements(By.CSS_SELECTOR, f'tr[data-display="{name}"]'):
            assert "Error" not in found.text, f"dashboard: {name} shows {found.text!r}"
            if wanted in found.text:
                return str(found.get_attribute("id")).rsplit("__", 1)[-1]
        return None

    ident = ui.wait(f"{name} to be {wanted} on {page}", shows, timeout)
    ui.shot(f"{name}-{wanted.lower().replace(' ', '-')}")
    return str(ident)


def allocate_button(name: str) -> str:
    return (
        f"//tr[td[normalize-space()='{name}']]"
        "//*[contains(@class,'fa-arrow-up')]/ancestor-or-self::button"
    )


def allocate(ui: browser.Dashboard, name: str) -> None:
    """In a wizard step's transfer table, move the row `name` to Allocated."""
    ui.xpath(allocate_button(name)).click()


def step(ui: browser.Dashboard, title: str) -> None:
    ui.xpath(f"//*[contains(@class,'wizard-nav')]//*[normalize-space()='{title}']").click()


def launch_in_wizard(ui: browser.Dashboard) -> None:
    ui.open("/project/instances/", "instances")
    ui.element("#instances__action_launch-ng").click()
    ui.element(".modal-dialog input[name='name']").send_keys(SERVER)
    ui.shot("wizard-details")
    step(ui, "Source")
    allocate(ui, TINY_IMAGE)
    ui.shot("wizard-source")
    step(ui, "Flavor")
    allocate(ui, "m1.tiny")
    ui.shot("wizard-flavor")
    step(ui, "Networks")
    # With one network the wizard allocates it by itself; otherwise it is chosen here.
    buttons = ui.driver.find_elements(By.XPATH, allocate_button("demo-net"))
    if any(button.is_displayed() for button in buttons):
        allocate(ui, "demo-net")
    ui.shot("wizard-networks")
    ui.element(".modal-footer button.finish").click()
    ui.wait("the wizard to close", lambda: not ui.driver.find_elements(By.CSS_SELECTOR, ".modal"))


def shades(ui: browser.Dashboard) -> int:
    """How many colours the console's canvas shows (a sample of its pixels)."""
    return int(
        ui.driver.execute_script(
            "const c = document.querySelector('#screen canvas');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "const seen = new Set();"
            "for (let i = 0; i < d.length; i += 4 * 97)"
            "  seen.add(d[i] * 65536 + d[i + 1] * 256 + d[i + 2]);"
            "return seen.size;"
        )
    )


def console_connects(ui: browser.Dashboard, server_id: str) -> None:
    ui.open(f"/project/instances/{server_id}/?tab=instance_details__console", "console-tab")
    frame = ui.element("#console_embed")
    ui.driver.switch_to.frame(frame)
    try:
        # vnc_lite.html opens wss:// when its page is HTTPS.
        assert ui.driver.execute_script("return location.protocol") == "https:"
        status = ui.wait(
            "the noVNC console to connect",
            lambda: (
                (text := ui.driver.find_element(By.ID, "status").text).startswith("Connected")
                and text
            ),
        )
        assert ui.element("#screen canvas").size["width"] > 0
        # The guest's screen has arrived: more than one colour on the canvas.
        ui.wait("the guest's screen on the console", lambda: shades(ui) > 1)
    finally:
        ui.driver.switch_to.default_content()
    ui.shot("console-connected")
    print(f"console: {status}")


def test_demo_user_works_in_the_dashboard(
    cloud: Path, dashboard: browser.Dashboard, cleanup: None
) -> None:
    added = run_dietstack("image", "add", "tiny", config=cloud)
    assert added.returncode == 0, added.stderr[-3000:]
    ui = dashboard
    ui.login("demo", password(cloud, "demo"))
    ui.open("/project/", "overview")
    assert re.search(r"Used \d+ of \d+", ui.text()), "the overview shows no quota usage"

    launch_in_wizard(ui)
    server_id = row(ui, "/project/instances/", SERVER, "Active")
    console_connects(ui, server_id)

    ui.open("/project/volumes/create/", "volume-form")
    ui.submit_form({"id_name": VOLUME, "id_size": "1"}, "volume-create")
    volume_id = row(ui, "/project/volumes/", VOLUME, "Available")
    ui.open(f"/project/volumes/{volume_id}/attach/", "volume-attach-form")
    ui.submit_form({"id_instance": SERVER}, "volume-attach")
    row(ui, "/project/volumes/", VOLUME, "In-use")

    ui.open("/project/stacks/select_template", "stack-template-form")
    ui.submit_form({"id_template_source": "Direct Input", "id_template_data": TEMPLATE}, "stack")
    ui.submit_form({"id_stack_name": STACK, "id_password": password(cloud, "demo")}, "stack-launch")
    row(ui, "/project/stacks/", STACK, "Create Complete")

    ui.open("/project/", "menu")
    panels = ui.menu_links("/project/")
    for panel in ("/project/instances/", "/project/network_topology/", "/project/routers/"):
        assert panel in panels, f"{panel} is not in the project menu: {panels}"
    for panel in panels:
        ui.open(panel, "project" + panel.replace("/", "-").rstrip("-"))
    ui.logout()


def test_admin_opens_the_admin_menus(cloud: Path, dashboard: browser.Dashboard) -> None:
    ui = dashboard
    ui.login("admin", password(cloud, "admin"))
    ui.open("/admin/hypervisors/", "hypervisors")
    assert deployed_env(cloud).node in ui.text()
    ui.open("/admin/info/?tab=system_info__nova_services", "compute-services")
    assert "nova-compute" in ui.text()
    ui.open("/admin/", "admin-menu")
    panels = ui.menu_links("/admin/") + ui.menu_links("/identity/")
    assert "/admin/hypervisors/" in panels, panels
    for panel in panels:
        ui.open(panel, "admin" + panel.replace("/", "-").rstrip("-"))
    ui.logout()
