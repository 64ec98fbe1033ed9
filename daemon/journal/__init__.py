"""The journal: the daemon's durable memory of every file it has seen."""
