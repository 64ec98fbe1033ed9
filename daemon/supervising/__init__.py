"""Supervising: the arbiter's main loop and the policies it applies to files and workers.

Runs in the daemon's own process, which never imports torch: models live in
spawned workers (daemon.worker).
"""
