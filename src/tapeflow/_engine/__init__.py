"""The pure engine: replays a workflow from its history and says what it decided.

No database, no sockets, no wall clock: everything it knows arrives as history events.
"""
