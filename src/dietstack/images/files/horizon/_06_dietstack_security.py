# Baked into DietStack's Horizon image, run by Horizon's settings after the
# rendered local_settings.py. Horizon's middleware list lacks Django's
# SecurityMiddleware, without which SECURE_HSTS_SECONDS (set in local_settings.py)
# sends no Strict-Transport-Security header.
_SECURITY = "django.middleware.security.SecurityMiddleware"
_MIDDLEWARE = tuple(globals()["MIDDLEWARE"])
if _SECURITY not in _MIDDLEWARE:
    MIDDLEWARE = (_SECURITY, *_MIDDLEWARE)
