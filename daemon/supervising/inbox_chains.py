"""Several chains resident at once: the daemon's chain, and the chains of inboxes that differ.

Recovery serves one chain for the whole daemon (daemon-wide demotion, the
cool-down, readiness, exit 3 when it runs out): `[worker] chain`, or, when
no inbox uses that chain, the first inbox's. An inbox whose profile names
another chain keeps that chain's first usable model resident beside it, in a
slot of its own ("fallback:<model>", never retired while the chain wants it),
on the first device of the daemon's device plan (daemon.devices).
Its files go to their own chain's models one file at a time: a file's model
is chosen at admission, and when a model cannot do the file (or keeps dying
on it) the file moves to the next model of *its* chain. Workers are keyed by
model, so a model that two chains share is loaded once.

Plain functions over chains (tuples of model names), so the workforce,
recovery and the flow of files share one answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from daemon.settings import Settings

Chain = tuple[str, ...]


def serving_chains(settings: Settings, *, watch: bool) -> tuple[list[str], list[Chain]]:
    """The chain recovery serves, and the other inboxes' chains that are kept resident."""
    primary: Chain = tuple(settings.worker.chain)
    if not watch:
        return list(primary), []  # `once` reads files of no inbox: [worker] chain
    chains = settings.chains()
    if chains and primary not in chains:
        primary = chains[0]  # no inbox uses [worker] chain: load nothing for it
    return list(primary), [chain for chain in chains if chain != primary]


def inboxes_by_chain(settings: Settings, *, watch: bool) -> dict[Chain, list[str]]:
    """The names of the inboxes each chain serves (none for `once`, which watches no inbox)."""
    by_chain: dict[Chain, list[str]] = {}
    if watch:
        for profile in settings.profiles().values():
            by_chain.setdefault(tuple(profile.chain), []).append(profile.name)
    return by_chain


def first_usable(chain: Chain, usable: Callable[[str], bool]) -> str | None:
    return next((model for model in chain if usable(model)), None)


def usable_after(chain: Chain, model: str, usable: Callable[[str], bool]) -> str | None:
    """The first usable model below `model` in `chain` (None at its end, or if it is not in it)."""
    if model not in chain:
        return None
    return first_usable(chain[chain.index(model) + 1 :], usable)


def resident_heads(chains: Iterable[Chain], usable: Callable[[str], bool]) -> list[str]:
    """Each chain's first usable model, once each (a shared model is loaded once)."""
    heads: list[str] = []
    for chain in chains:
        head = first_usable(chain, usable)
        if head is not None and head not in heads:
            heads.append(head)
    return heads
