"""Reaching machines: a host adapter per node (this host, or a node over SSH), its
Docker engine, its network and the facts found on it. Imports nothing above it."""
