"""DietStack: a small OpenStack private cloud, built from upstream releases."""

__version__ = "0.1.0"

#: The one OpenStack release this version of DietStack deploys.
RELEASE = "2026.1"
