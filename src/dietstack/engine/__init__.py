"""The deploy engine: settings, secrets and inventory in; a plan per node and its
application (render, converge, bootstrap, register) out; the checks before a change
and the teardown after. Works on one Deployment value at a time."""
