"""Completion webhooks: a JSON POST per finished file, delivered at least once.

The supervisor's ledger builds an event when a file is done or failed
(`events`) and stores it in the journal's outbox before handing it to the
sending thread (`sender`), which POSTs it (`posting`), retrying with backoff
while the receiver is down (`backoff`). Which URL an inbox's events go to,
and how a URL is shown in a log line: `urls`.
"""
