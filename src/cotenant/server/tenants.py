"""Tenants and their contracts: create, amend, give notice. Each change is stored with
its audit entry first, then applied to the live engine."""

from __future__ import annotations

import threading

from cotenant.cluster.topology import Topology
from cotenant.contracts.schema import ContractTable, validate_contracts
from cotenant.model.contracts import Contract, Tenant
from cotenant.model.errors import Conflict, NotFound, SpecError
from cotenant.server.bootstrap import store_contract
from cotenant.server.keys import Principal
from cotenant.server.runner import Runner
from cotenant.store import repo
from cotenant.store.mapping import (
    ContractVersionRecord,
    TenantRecord,
    contract_version_from_row,
    tenant_from_row,
)
from cotenant.store.repo import Store
from cotenant.store.writer import Tx


class TenantService:
    """The tenants router's operations, and the tenants and contracts the server knows."""

    def __init__(
        self,
        store: Store,
        topo: Topology,
        runner: Runner,
        names: set[str],
        contracts: dict[str, Contract],
    ) -> None:
        self.store = store
        self.topo = topo
        self.runner = runner
        self.names = names
        self.contracts = contracts
        self._admin = threading.Lock()  # serialises contract and tenant changes

    # -- reads --------------------------------------------------------------------------------
    def get(self, name: str) -> TenantRecord:
        row = self.store.tenant(name)
        if row is None:
            raise NotFound(f"no tenant {name!r}")
        return tenant_from_row(row)

    def all(self) -> list[TenantRecord]:
        """Every tenant, by name."""
        return [tenant_from_row(r) for r in self.store.tenants()]

    def versions(self, tenant: str) -> list[ContractVersionRecord]:
        """Every version of the tenant's contract, oldest first."""
        return [contract_version_from_row(r) for r in self.store.contract_versions(tenant)]

    # -- changes ------------------------------------------------------------------------------

    def create(
        self, by: Principal, name: str, display_name: str, table: ContractTable | None
    ) -> Contract | None:
        with self._admin:
            if name in self.names:
                raise Conflict(f"tenant {name!r} already exists")
            now = self.runner.clock.now()
            contract = None
            if table is not None:
                contract = self._parse_contract(name, table, now)

            def op(tx: Tx) -> None:
                repo.add_tenant(tx, name, display_name, now)
                tx.audit(
                    now,
                    "tenant-created",
                    {"tenant": name, "display_name": display_name, "by": by.key_id},
                )
                if contract is not None:
                    store_contract(tx, by.key_id, contract, "create", now)

            self.store.writer.call(op)
            self.names.add(name)
            if contract is not None:
                self._apply_contract(contract)
            return contract

    def set_contract(self, by: Principal, tenant: str, table: ContractTable) -> Contract:
        with self._admin:
            if tenant not in self.names:
                raise NotFound(f"no tenant {tenant!r}")
            now = self.runner.clock.now()
            contract = self._parse_contract(tenant, table, now)
            change = "amend" if tenant in self.contracts else "create"
            self.store.writer.call(lambda tx: store_contract(tx, by.key_id, contract, change, now))
            self._apply_contract(contract)
            return contract

    def give_notice(self, by: Principal, tenant: str, at_s: int | None) -> Contract:
        with self._admin:
            if tenant not in self.names:
                raise NotFound(f"no tenant {tenant!r}")
            c = self.contracts.get(tenant)
            if c is None:
                raise NotFound(f"tenant {tenant!r} has no contract")
            if c.notice.given_at is not None:
                raise Conflict(f"notice was already given for {tenant!r} at {c.notice.given_at}")
            now = self.runner.clock.now()
            at = now if at_s is None else at_s
            if at < now:
                raise SpecError("at_s", f"notice cannot be backdated (now is {now}, got {at})")
            new = c.with_notice(at)
            self.store.writer.call(lambda tx: store_contract(tx, by.key_id, new, "notice", now))
            self._apply_contract(new)
            return new

    def _parse_contract(self, tenant: str, table: ContractTable, now: int) -> Contract:
        """The contract a table (already read: the request's body) says, checked against
        the cluster and the other tenants' contracts; errors name ``contract.<key>``."""
        contract = table.contract(tenant, "contract", now, self.topo.spec)
        # The tenant being changed goes last, so a sum that overflows is blamed on it.
        names = [*sorted(self.names - {tenant}), tenant]
        merged = {**self.contracts, tenant: contract}
        tenants = [Tenant(n, n, merged.get(n)) for n in names]
        try:
            validate_contracts(tenants, self.topo.spec)
        except SpecError as e:
            prefix = f"tenants[{len(names) - 1}]."
            fld = e.field[len(prefix) :] if e.field.startswith(prefix) else "contract"
            raise SpecError(fld, e.problem) from None
        return contract

    def _apply_contract(self, contract: Contract) -> None:
        self.contracts[contract.tenant] = contract
        engine = self.runner.engine
        self.runner.call(lambda: engine.set_contract(contract))
