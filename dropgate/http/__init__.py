"""The aiohttp JSON API (API.md): app factory, routes, auth, errors, OpenAPI, metrics."""
