"""Time parameters are parsed in query/params.py with the other request parameters; this module keeps
the names web/ and the tests import."""
from .params import EARLIEST, LATEST, UNITS, clamp, cursor_time, iso, now_utc, parse_time

__all__ = ["EARLIEST", "LATEST", "UNITS", "clamp", "cursor_time", "iso", "now_utc", "parse_time"]
