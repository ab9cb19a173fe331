"""tasktrail: an event-sourced observability backend for distributed task runners."""
__version__ = "0.1.0"
