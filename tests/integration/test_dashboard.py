"""The dashboard in a real browser: what a demo user and the admin do in it.

Screenshots of every step stay in test-artifacts/dashboard/ after the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
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
def dashboard(cloud: Path) -> Iterator[browser.Dashboard]:
    with browser.chromium(horizon.url(deployed_env(cloud)), ARTIFACTS) as ui:
        yield ui
    print(f"dashboard screenshots: {ARTIFACTS.resolve()}")


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


def console_connects(ui: browser.Dashboard, server_id: str) -> None:
    ui.open(f"/project/instances/{server_id}/?tab=instance_details__console", "console-tab")
    frame = ui.element("#console_embed")
    ui.driver.switch_to.frame(frame)
    try:
        status = ui.wait(
            "the noVNC console to connect",
            lambda: (
                (text := ui.driver.find_element(By.ID, "status").text).startswith("Connected")
                and text
            ),
        )
        assert ui.element("#screen canvas").size["width"] > 0
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
