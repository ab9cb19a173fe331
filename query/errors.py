"""Domain errors of the read side; web/errors.py maps them to HTTP answers."""


class NotFound(LookupError):
    """The entity asked for is not in the log."""


class BadRequest(ValueError):
    """A filter, cursor or SQL statement the query service will not run."""
