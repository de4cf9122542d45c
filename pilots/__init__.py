"""The composition root: the `pilots` command wires core, ingest, api and simulators together.

Nothing else may import more than one of those packages; this is where they meet.
"""
