"""One Slurm cluster's controller as the Slurm backend sees it: the environment every
command runs with (its ``SLURM_CONF``), whether it answers, since when it has been
silent, and that it is the cluster configured (``ClusterName``).

Measured (Slurm 22.05): with slurmctld gone, ``squeue``, ``sinfo``, ``sbatch`` and
``scancel`` each retry for about 9 s before failing, while ``scontrol ping`` answers a
refused connection in about 10 ms; so the backend pings first and asks nothing else of
a silent controller.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

from cotenant.backends.slurm_cli import SlurmError, cli
from cotenant.model.errors import SpecError

log = logging.getLogger("cotenant.backends.slurm")


class SlurmController:
    def __init__(
        self,
        env: Mapping[str, str] | None,
        slurm_conf: str | Path | None,
        cluster: str | None,
        label: str | None,
        timeout_s: int,
    ) -> None:
        """``env``: the commands' environment (None: this process's); ``slurm_conf``
        replaces its ``SLURM_CONF``; ``cluster``: the ``ClusterName`` expected (None: not
        checked); ``label``: the name in messages; ``timeout_s``: how long a silent
        controller is waited for before it is lost."""
        if timeout_s < 1:
            raise SpecError("backend.controller_timeout_s", f"must be >= 1, got {timeout_s}")
        self.env = None if env is None else dict(env)
        if slurm_conf is not None:
            conf = Path(slurm_conf)
            if not conf.is_file():
                raise SpecError("backend.slurm_conf", f"no such file: {conf}")
            base = self.env if self.env is not None else os.environ
            self.env = {**base, "SLURM_CONF": str(conf)}
        self.cluster = cluster
        self.label = label
        self.timeout_s = timeout_s
        self.silent_since: float | None = None  # wall time it stopped answering
        self.lost = False  # reported lost for this silence
        self._checked = cluster is None

    @property
    def name(self) -> str:
        if self.label is not None:
            return f"cluster {self.label}"
        if self.cluster is not None:
            return f"cluster {self.cluster}"
        conf = (self.env or {}).get("SLURM_CONF")
        return f"the cluster of {conf}" if conf else "the default cluster"

    @property
    def silent(self) -> bool:
        """It did not answer when last asked (nothing but pings is sent to it)."""
        return self.silent_since is not None

    def run(self, *argv: str, stdin: str | None = None) -> str:
        return cli(list(argv), self.env, stdin)

    def answers(self) -> bool:
        try:
            out = cli(["scontrol", "ping"], self.env, timeout_s=self.timeout_s)
        except SlurmError:
            return False
        return " is UP" in out

    def went_silent(self, wall: float) -> bool:
        """It did not answer at ``wall``; true once (per silence) when it has been silent
        for ``timeout_s``: it is lost."""
        if self.silent_since is None:
            self.silent_since = wall
            log.warning("Slurm controller of %s does not answer", self.name)
        if self.lost or wall - self.silent_since < self.timeout_s:
            return False
        self.lost = True
        return True

    def answered(self, wall: float) -> None:
        if self.silent_since is not None:
            log.warning(
                "Slurm controller of %s answers again after %.0f s",
                self.name,
                wall - self.silent_since,
            )
        self.silent_since, self.lost = None, False

    def check_cluster(self) -> None:
        """The cluster answering is the one configured, else ``SpecError`` (checked once;
        a controller that cannot be asked now is asked again next time)."""
        if self._checked:
            return
        try:
            out = self.run("scontrol", "show", "config")
        except SlurmError as e:
            log.warning("cannot read the configuration of %s: %s", self.name, e)
            return
        m = re.search(r"^ClusterName\s*=\s*(\S+)", out, re.M)
        found = m[1] if m else None
        if found != self.cluster:
            raise SpecError(
                "backend.cluster",
                f"expected Slurm cluster {self.cluster!r}, but SLURM_CONF="
                f"{(self.env or os.environ).get('SLURM_CONF', '(default)')} names {found!r}",
            )
        self._checked = True

    def right_cluster(self) -> bool:
        """``check_cluster`` for a controller that first answered after the start: a
        wrong cluster is logged and never driven (it counts as silent) rather than
        stopping the engine of every cluster."""
        try:
            self.check_cluster()
        except SpecError as e:
            log.error("%s", e)
            return False
        return True
