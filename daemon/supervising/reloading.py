"""What a SIGHUP changes in a running supervisor, once the new settings have been read and accepted.

Files in flight finish with the settings they started with; workers are
replaced one by one, each after its current file, when what they were started
with changed; the watcher follows new inboxes and profiles. `[state]` and
`[metrics]` need a restart: the journal and the listening socket stay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from daemon import logs
from daemon.settings import Settings
from daemon.supervising.inbox_chains import inboxes_by_chain, serving_chains

if TYPE_CHECKING:
    from daemon.supervising.arbiter import Supervisor

log = structlog.get_logger("daemon.supervising.arbiter")


def apply_settings(sup: Supervisor, new: Settings) -> list[str]:
    """Make `new` the running settings; the daemon's chain under them."""
    old, old_profiles = sup.settings, sup.flow.profiles
    sup.settings = sup.flow.settings = sup.workforce.settings = new
    sup.flow.profiles = new.profiles()
    sup.metrics.declare_inboxes(profile.name for profile in sup.flow.profiles.values())
    primary, resident = serving_chains(new, watch=sup.watching)
    inboxes = inboxes_by_chain(new, watch=sup.watching)
    if (
        (primary, resident) != (sup.recovery.chain.names, sup.recovery.resident)
        or new.recovery != old.recovery
        or inboxes != inboxes_by_chain(old, watch=sup.watching)
    ):
        sup.recovery.reset(primary, new.recovery, resident, inboxes)
    for task in sup.queue:
        if task.chain:
            continue  # its inbox's own chain, chosen at admission
        if task.model_override is not None and task.model_override not in primary:
            # Its fallback model left the chain (perhaps the settings too):
            # the file starts again at the new chain's head instead of
            # waiting for a worker that can no longer be configured.
            sup.queue.clear_override(task, sup.clock())
    if any(
        getattr(new, key) != getattr(old, key)
        for key in ("models", "limits", "worker", "recovery", "log")
    ):
        sup.workforce.generation += 1  # workers are replaced, each after its current file
    sup.pool.backoff_cap = new.recovery.backoff_cap_seconds
    sup.pool.grace = new.recovery.stop_grace_seconds
    sup.ledger.indent = new.outputs.json_indent
    sup.ledger.retry_seconds = new.outputs.retry_seconds
    sup.intake.max_bytes = new.limits.max_file_bytes
    if sup.webhooks is not None:  # webhook_url is read per file, through sup.settings
        sup.webhooks.configure(new.outputs)
    if new.log != old.log:
        logs.configure(new.log.level, new.log.format)
    if sup.watcher is not None and (new.watch != old.watch or sup.flow.profiles != old_profiles):
        sup.watcher.update(new.watch, sup.flow.profiles.values())
    for key in ("state", "metrics"):
        if getattr(new, key) != getattr(old, key):
            log.warning("settings.needs_restart", section=key)
    return primary
