# Baked into DietStack's Horizon image and read both when the image is built
# and when it runs: the offline-compressed pages are valid only while these
# stay the same, so the rendered local_settings.py never sets them.
STATIC_ROOT = "/var/lib/horizon/static"
STATIC_URL = "/static/"
WEBROOT = "/"
COMPRESS_ENABLED = True
COMPRESS_OFFLINE = True
AVAILABLE_THEMES = [("default", "Default", "themes/default")]
DEFAULT_THEME = "default"
