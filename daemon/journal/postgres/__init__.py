"""The shared journal on PostgreSQL ([state] url): leased claims for several daemons on one share."""
