"""DietStack: a small OpenStack private cloud, built from upstream releases."""

__version__ = "0.1.0"
