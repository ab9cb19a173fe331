"""Domain errors of the read side; web/errors.py maps them to HTTP answers."""
# The store's errors a read can raise (store/api.py), named here too: the web maps them without the store.
from tasktrail.store.api import QueryTimeout, ReadersBusy, StoreClosed, StoreUnavailable  # noqa: F401


class NotFound(LookupError):
    """The entity asked for is not in the log."""


class BadRequest(ValueError):
    """A filter, cursor or SQL statement the query service will not run."""


class Conflict(ValueError):
    """The request cannot be carried out in the entity's present state (abort a finished invocation): 409."""
