"""The aiohttp JSON API (docs/api.md): app factory, routes, auth, errors, OpenAPI, metrics."""
