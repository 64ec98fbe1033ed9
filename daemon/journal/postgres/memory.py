"""What one node keeps in memory beside the shared journal: the claims it holds, and the final index.

Both are read and written from two threads (the main loop, the heartbeat;
is_final from the watcher's thread), hence a lock each.
"""

from __future__ import annotations

import threading

from daemon.journal.interface import FileKey


class NodeMemory:
    def __init__(self) -> None:
        self._claims_lock = threading.Lock()
        self._claims: set[FileKey] = set()
        # Claims whose lease the heartbeat found gone: the main loop's next
        # write for one of them counts it lost (the heartbeat cannot tell a
        # lease lost from a claim the main loop finished a moment ago).
        self._expired: set[FileKey] = set()
        self._final_lock = threading.Lock()
        # key -> (size, mtime_ns) of rows in a final state, this node's and
        # (through the heartbeat) the other nodes': a rescan costs no query.
        self._final: dict[FileKey, tuple[int, int]] = {}

    # --- claims ----------------------------------------------------------------

    def holds(self, key: FileKey) -> bool:
        with self._claims_lock:
            return key in self._claims

    def hold(self, key: FileKey) -> None:
        with self._claims_lock:
            self._claims.add(key)
            self._expired.discard(key)

    def expire(self, *keys: FileKey) -> None:
        """The heartbeat could not renew these leases: no longer held, maybe lost."""
        with self._claims_lock:
            self._claims.difference_update(keys)
            self._expired.update(keys)

    def take_expired(self, key: FileKey) -> bool:
        """True (once) when the heartbeat found this claim's lease gone."""
        with self._claims_lock:
            found = key in self._expired
            self._expired.discard(key)
            return found

    def let_go(self, *keys: FileKey) -> None:
        with self._claims_lock:
            self._claims.difference_update(keys)

    def held(self) -> list[FileKey]:
        with self._claims_lock:
            return list(self._claims)

    def let_go_all(self) -> None:
        with self._claims_lock:
            self._claims.clear()
            self._expired.clear()

    # --- the final index ---------------------------------------------------------

    def is_final(self, key: FileKey, size: int, mtime_ns: int) -> bool:
        with self._final_lock:
            return self._final.get(key) == (size, mtime_ns)

    def set_final(self, key: FileKey, size: int, mtime_ns: int) -> None:
        with self._final_lock:
            self._final[key] = (size, mtime_ns)

    def drop_final(self, key: FileKey) -> None:
        with self._final_lock:
            self._final.pop(key, None)

    def replace_final(self, rows: dict[FileKey, tuple[int, int] | None], everything: bool) -> None:
        """Rows changed (None: no longer final); `everything`: these are the whole index."""
        with self._final_lock:
            if everything:
                self._final = {}
            for key, value in rows.items():
                if value is None:
                    self._final.pop(key, None)
                else:
                    self._final[key] = value
