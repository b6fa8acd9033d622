"""The thin HTTP layer: a bare ASGI app with a dict router, msgspec DTOs and a generated spec."""
