"""Imported by uWSGI before an API's application (its `import` option).

The changes of dietstack/start/in_process.py that matter in an API process: an
RPC call (Nova's API asking a compute node for a console log, every request of
Heat's API to heat-engine) takes its reply when it arrives instead of at the
next of oslo.messaging's twice-a-second looks; and an RPC server (Heat's engine,
which runs in heat-api's process) starts threads only as its requests need them.
Standard library only.
"""

from __future__ import annotations

from dietstack.start import in_process

in_process.install([in_process.AMQP_DRIVER, in_process.RPC_SERVER])
