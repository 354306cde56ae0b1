"""Storage nodes: where each mirror lives when several gitserver processes share a database.

`placement` decides (rendezvous hashing of the repository's stable id over the active
nodes), `registry` owns the `storage_nodes` table (who is there, alive, draining, how
heavy), `heartbeat` keeps a gitserver process's row alive.
"""
