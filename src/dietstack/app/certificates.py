"""The cloud's certificates: when each ends (`certs list`), and all of DietStack's
own issued anew (`certs renew`) with no instance stopped.

Renewal keeps both CAs, so no client needs to trust anything new. The APIs,
RabbitMQ, OVN and the console proxy are started again with their new
certificates (the APIs pause for seconds); libvirt's are rewritten where it runs
and taken up without a restart, so the guests keep running.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from dietstack.app import cloud as clouds
from dietstack.app import lifecycle
from dietstack.app.cloud import Cloud
from dietstack.engine import certexpiry, secrets
from dietstack.errors import DietStackError


@dataclass(frozen=True)
class Row:
    what: str
    ends: datetime.datetime | None


def rows(config_path: Path) -> list[Row]:
    """Every certificate in the cloud's secrets, and when it ends."""
    values = clouds.read_inputs(config_path).secrets
    if not values:
        raise DietStackError("this cloud has no certificates yet", hint="run `dietstack deploy`")
    return [
        Row(what, certexpiry.end_of(values[name]))
        for name, what in certexpiry.certificates(values).items()
    ]


def renew(config_path: Path, verbose: bool) -> tuple[Cloud, float]:
    """DietStack's own certificates issued anew, then deployed to every node."""
    cloud = clouds.read_only(config_path)
    if not cloud.inputs.secrets:
        raise DietStackError("this cloud has no certificates yet", hint="run `dietstack deploy`")
    secrets.renew_certificates(cloud.inputs.paths.secrets_file, cloud.control.env.nodes)
    return lifecycle.deploy_everything(config_path, verbose)
