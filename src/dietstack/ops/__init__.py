"""The running cloud's operations: backup and restore, stop and start, drain, verify
and Tempest, status and logs, images into Glance."""
