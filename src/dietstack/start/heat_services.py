"""Heat's two APIs and its engine in one uWSGI worker.

uWSGI loads this as heat-api's application. Heat ships its APIs as WSGI
applications and its engine as the heat-engine command; both read heat.conf and
the engine alone imports all of Heat again (about 140 MiB, against 80 MiB for
the APIs). They talk to each other only over RPC. So the worker first loads the
APIs (dietstack.start.wsgi_ports, which reads heat.conf the way Heat's WSGI
scripts do), then starts the engine's oslo.service Service in the same process,
as heat-engine would with one worker (its RPC servers, its listener and its
periodic report run in threads of their own). The engine still reports to
Heat's service list (`openstack orchestration service list`), so a failure of
the engine shows apart from the APIs' health.

Each uWSGI worker runs one engine: the API workers and the engine workers are
the same number, as DietStack configures them anyway. When uWSGI ends the worker,
the engine ends with it, as a heat-engine that is killed would (uWSGI runs no
exit hook of Python's in a worker): its row stays in the service list, marked
down, until Heat finds it stale, and a stack operation under way at that moment
is left in progress, as after any engine's death. heat-engine under oslo.service
had a few seconds to finish instead.

Standard library only outside the worker's own imports of Heat.
"""

from __future__ import annotations

from typing import Any

__all__ = ["application", "engine"]


def use_threads() -> None:
    """heat-engine's own choice, made before Heat's APIs load: they would settle
    on oslo.service's default backend, still eventlet."""
    from oslo_service import backend

    backend.init_backend(backend.BackendType.THREADING)


def start_engine() -> Any:
    """heat-engine's start, with its one worker in this process."""
    from heat.common import config
    from heat.engine import template
    from heat.rpc import api as rpc_api
    from oslo_config import cfg

    config.startup_sanity_check()
    if not template._get_template_extension_manager().names():
        raise SystemExit("heat-engine: no template format plugins registered")
    from heat.engine import service as engine

    server = engine.EngineService(cfg.CONF.host, rpc_api.ENGINE_TOPIC)
    server.start()
    return server


use_threads()
# The APIs next (wsgi_ports loads them when imported): each of Heat's WSGI scripts
# parses heat.conf afresh, so the engine starts after both.
from dietstack.start.wsgi_ports import application  # noqa: E402

engine = start_engine()
