"""Watching: finding files in the inboxes and handing each on once it is complete.

The watcher's own thread, fed by one watchdog observer per inbox, tracks files
until they are stable; the intake hashes them off the main loop and queues
them for the supervisor.
"""
