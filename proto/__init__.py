"""The wire contract: status model, attribute names, canonical rows, dialects, emitters.

Imports nothing else of tasktrail, so runners can depend on it alone.
"""
