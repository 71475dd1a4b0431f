"""What keeps a service's tokenizer, ID registry and CTR run in agreement.

All three name a tokenizer by its content version. A service starts only when they agree (the
registry's current version and the CTR run's are the tokenizer's), a reload is accepted only
when the new tokenizer is the registry's current version (the CTR run's item rows are then
carried through the registry's mapping), and ``migrate`` moves the registry to a new tokenizer
and switches the service to it as one step.

Every method here runs on the service's registry thread, the one thread that touches the
registry: a migration and the switch that follows it cannot interleave with an assignment, and
an assignment whose codes were computed by a version that was switched away while it waited is
encoded again with the current one, so no request fails across a switch.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from rqgmm.errors import RqgmmError, VersionMismatchError
from rqgmm.serve.versions import TokenizerVersion, VersionHolder


class SwitchRefused(RqgmmError, ValueError):
    """A reload or migration that would leave the service's parts disagreeing (HTTP 409)."""


class Lifecycle:
    """The served version, the registry (or None) and the CTR scorer (or None), kept in step.

    online_limit: how many embeddings of items assigned through this service are remembered,
    so that a migration from a catalogue file written before they arrived still covers them.
    """

    def __init__(self, versions: VersionHolder, registry, scorer, *, registry_name: str | None,
                 run_name: str | None, online_limit: int = 100_000):
        self.versions = versions
        self.registry = registry
        self.scorer = scorer
        self.registry_name = registry_name
        self.run_name = run_name
        self.online_limit = online_limit
        self._online: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the version and the scorer change together

    def served(self) -> tuple[TokenizerVersion, object]:
        """The current version and the CTR scorer that agrees with it, read together."""
        with self._lock:
            return self.versions.current, self.scorer

    # ------------------------------------------------------------------ agreement
    def problems(self, candidate: TokenizerVersion, *, carry: bool = True) -> list[str]:
        """Why ``candidate`` cannot be served with this registry and CTR run (empty: it can), each
        with the command that fixes it. ``carry``: a CTR run the registry can carry forward (a
        recorded migration from its version) is no problem; without it the run must be at
        ``candidate``'s version already (how a service starts)."""
        found = []
        if self.registry is not None:
            current = self.registry.current_version
            if current is not None and current != candidate.version and candidate.version in self.registry.versions():
                found.append(f"registry {self.registry_name} has moved past tokenizer version {candidate.version}"
                             f" ({candidate.path}) to {current}; versions only move forward: serve the tokenizer of"
                             f" version {current}")
            elif current is not None and current != candidate.version:
                found.append(f"registry {self.registry_name} is at tokenizer version {current}, the tokenizer"
                             f" {candidate.path} is version {candidate.version}: move the registry with"
                             f" `rqgmm registry migrate {self.registry_name} {candidate.path} CATALOGUE` (or POST"
                             f" /v1/admin/migrate), or serve the tokenizer of version {current}")
        scorer = self.scorer
        if scorer is not None and scorer.uses_sid and scorer.tokenizer_version != candidate.version \
                and not (carry and self._can_carry(scorer.tokenizer_version, candidate.version)):
            made = ("records no tokenizer version" if scorer.tokenizer_version is None
                    else f"was trained with tokenizer version {scorer.tokenizer_version}")
            found.append(f"CTR run {self.run_name} {made}, the tokenizer {candidate.path} is version"
                         f" {candidate.version}: carry it forward with `rqgmm ctr remap {self.run_name} --registry"
                         f" {self.registry_name or 'DB'}` (or retrain it with this tokenizer)")
        return found

    def check_start(self) -> None:
        """Refuse to start a service whose parts disagree, naming each disagreement."""
        found = self.problems(self.versions.current, carry=False)
        if found:
            raise VersionMismatchError("; ".join(found))

    def _can_carry(self, old: str | None, new: str) -> bool:
        """Whether the registry recorded every migration from ``old`` to ``new``."""
        if self.registry is None or old is None:
            return False
        try:
            self.registry.migration_chain(old, new)
        except RqgmmError:
            return False
        return True

    def _carried_scorer(self, target: TokenizerVersion):
        """The CTR scorer with its item rows carried to ``target`` through the registry's current
        IDs (the scorer itself when nothing needs carrying)."""
        scorer = self.scorer
        if scorer is None or not scorer.uses_sid or scorer.tokenizer_version == target.version:
            return scorer
        return scorer.remapped(self.registry.current_codes(), target.version)

    # ------------------------------------------------------------------ switches
    def switch_to(self, candidate: TokenizerVersion) -> dict:
        """Serve ``candidate`` (a reload): refused with :class:`SwitchRefused` unless the registry
        is at its version; the CTR run is carried forward through the registry's mapping."""
        found = self.problems(candidate)
        if found:
            raise SwitchRefused("; ".join(found))
        scorer = self._carried_scorer(candidate)
        previous = self.versions.current.version
        with self._lock:
            self.scorer = scorer
            self.versions.swap(candidate)
        return {"version": candidate.version, "previous": previous}

    def migrate(self, candidate: TokenizerVersion, ids: list[str], codes: np.ndarray) -> dict:
        """Move the registry to ``candidate`` (``codes`` (n, L): its codes of the catalogue items
        ``ids``), then switch to it: one step for every other request of this service."""
        if self.registry is None:
            raise SwitchRefused("this service was started without --registry; use /v1/admin/reload")
        if self.registry.current_version == candidate.version:  # a retried call: the registry is there already
            return {**self.switch_to(candidate), "migrated": 0, "changed": 0}
        active = [item_id for item_id, *_ in self.registry.items()]
        given = dict(zip(ids, range(len(ids))))
        missing = [item_id for item_id in active if item_id not in given]
        remembered = [item_id for item_id in missing if item_id in self._online]
        unknown = sorted(set(missing) - set(remembered))
        if unknown:
            raise SwitchRefused(f"the catalogue lacks {len(unknown)} item(s) the registry holds (e.g. {unknown[:3]})"
                                " and this service has not seen their embeddings; write a catalogue of every"
                                " active item and migrate again")
        rows = [given[item_id] for item_id in active if item_id in given]
        kept_ids = [active_id for active_id in active if active_id in given]
        all_codes = np.asarray(codes, dtype=np.int64)[rows]
        if remembered:
            extra = candidate.tokenizer.encode(np.stack([self._online[i] for i in remembered]))
            kept_ids, all_codes = kept_ids + remembered, np.concatenate([all_codes, extra])
        mapping = self.registry.migrate(kept_ids, all_codes, candidate.version)
        switched = self.switch_to(candidate)
        return {**switched, "migrated": len(mapping),
                "changed": sum(old != new for old, new in mapping.values())}

    # ------------------------------------------------------------------ assignments
    def assign(self, ids: list[str], rows: np.ndarray, codes: np.ndarray, version: TokenizerVersion):
        """Registry IDs of new items ``ids`` with embeddings ``rows`` (n, dim), ``codes`` computed
        by ``version``; codes of a version switched away meanwhile are computed again."""
        current = self.versions.current
        if version is not current:
            codes, version = current.tokenizer.encode(rows), current
        assigned = self.registry.assign(ids, codes, version.version)
        for assignment, row in zip(assigned, rows):
            if assignment.new:
                self._online[assignment.item_id] = np.array(row, dtype=np.float32)
                if len(self._online) > self.online_limit:
                    self._online.popitem(last=False)
        return assigned
