"""The Starlette app: pages, the JSON API, health, metrics."""
