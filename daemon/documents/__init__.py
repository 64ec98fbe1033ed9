"""Reading inputs: a file's bytes as upright RGB page images, within the limits.

Runs in the worker process (daemon.worker); opening.open_document is the way in.
"""
