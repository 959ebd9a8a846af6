"""A throw-away single-node Slurm cluster started from Debian's binaries.

Never the machine's own Slurm: :class:`SlurmCluster` writes a minimal
``slurm.conf`` into a fresh temporary folder and starts its own ``munged``
(own key and socket), ``slurmctld`` and ``slurmd`` there, on free ports of
127.0.0.1, with the node named after this host (``hostname -s``). Clients
(``sbatch``, ``squeue``, Snakemake's Slurm executor) find it through
``SLURM_CONF`` (:attr:`env`). ``stop()`` kills the three daemons and removes
the folder.

What a test may want to see afterwards is kept in known places: the
controller's saved job scripts and environments (:attr:`state_dir`), the
node's spool (:attr:`spool_dir`) and both daemons' logs. A ``TaskProlog``
exports ``LEAD_RECOVERY_NOW`` into every job task while :meth:`job_clock` is
set, emulating a cluster whose jobs start at another time than the submission.

Slurm without ``slurmdbd`` has no ``sacct`` (no accounting): status comes from
``squeue``, and ``MinJobAge`` keeps finished jobs listed for ten minutes.

Standard library only (used by the tests and by ``bench/``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "srun", "scancel")
PARTITION = "lrtest"
DOWN_PARTITION = "lrdown"


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()),
        None,
    )


def missing_binaries() -> list[str]:
    """The Slurm and munge programs this machine lacks (``make test`` installs them)."""
    return [name for name in (*DAEMONS, *CLIENTS) if _binary(name) is None]


def _die_with_parent() -> None:
    """In a daemon, before it starts: SIGKILL when the process that started it dies, so
    that a test session killed outright (SIGKILL, a CI time-out) leaves no Slurm behind."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_hardware() -> str:
    """This host's CPU layout as slurmd sees it (``slurmd -C``): a node that claims more
    than it has is drained, so the layout is the host's own."""
    out = subprocess.run(
        [_binary("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=30
    ).stdout
    line = next((x for x in out.splitlines() if x.startswith("NodeName=")), "")
    keep = ("CPUs=", "Boards=", "SocketsPerBoard=", "CoresPerSocket=", "ThreadsPerCore=")
    parts = [p for p in line.split() if p.startswith(keep)]
    return " ".join(parts) or f"CPUs={os.cpu_count() or 1}"


class SlurmCluster:
    """One private single-node Slurm; use as a context manager or start()/stop()."""

    def __init__(self, *, memory_mb: int = 4000, def_mem_per_cpu: int = 500) -> None:
        self.memory_mb = memory_mb
        self.def_mem_per_cpu = def_mem_per_cpu
        self.node = socket.gethostname().split(".")[0]
        self.base: Path | None = None
        self.ctld_port: int | None = None
        self.slurmd_port: int | None = None
        self._procs: dict[str, subprocess.Popen] = {}

    # -- paths ---------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.base / "etc/slurm.conf"

    @property
    def state_dir(self) -> Path:
        """slurmctld's StateSaveLocation: each job's saved script and environment."""
        return self.base / "state"

    @property
    def spool_dir(self) -> Path:
        """slurmd's SlurmdSpoolDir: the job scripts a node runs."""
        return self.base / "spool"

    @property
    def munge_socket(self) -> Path:
        return self.base / "munge/munge.socket"

    @property
    def _clock_file(self) -> Path:
        return self.base / "etc/job_clock"

    @property
    def env(self) -> dict[str, str]:
        """What a client needs: the configuration file (which names the munge socket)."""
        return {"SLURM_CONF": str(self.conf)}

    def log(self, daemon: str) -> str:
        path = self.base / f"log/{daemon}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- lifecycle -----------------------------------------------------------
    def start(self, timeout_s: float = 60) -> SlurmCluster:
        missing = missing_binaries()
        if missing:
            raise RuntimeError(
                f"Slurm programs not found: {', '.join(missing)}; run `make test` "
                "(it installs Debian's slurmctld, slurmd, slurm-client and munge)"
            )
        self.base = Path(tempfile.mkdtemp(prefix="lr-slurm-"))
        atexit.register(self.stop)
        for sub in ("etc", "state", "spool", "log", "run", "munge"):
            (self.base / sub).mkdir(mode=0o700)
        self._start_munge()
        self.ctld_port, self.slurmd_port = free_port(), free_port()
        self._write_conf()
        self._spawn("slurmctld", [_binary("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._spawn(
            "slurmd",
            self._in_node_namespace(
                [_binary("slurmd"), "-D", "-f", str(self.conf), "-N", self.node]
            ),
        )
        self._wait_until_idle(timeout_s)
        return self

    def _start_munge(self) -> None:
        key = self.base / "munge/munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self._spawn(
            "munged",
            [
                _binary("munged"),
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.base / 'munge/munged.pid'}",
                f"--log-file={self.base / 'log/munged.log'}",
                f"--seed-file={self.base / 'munge/munged.seed'}",
            ],
        )
        deadline = time.monotonic() + 20
        while not self.munge_socket.exists():
            self._check_alive("munged")
            if time.monotonic() > deadline:
                raise RuntimeError(f"munged did not start: {self.log('munged')[-2000:]}")
            time.sleep(0.05)

    def _write_conf(self) -> None:
        b = self.base
        prolog = b / "etc/task_prolog.sh"
        prolog.write_text(
            "#!/bin/sh\n"
            "# Emulates a cluster whose jobs start at another time: while the test sets\n"
            "# it, every task of every job gets this LEAD_RECOVERY_NOW.\n"
            f'if [ -s "{self._clock_file}" ]; then\n'
            f'  echo "export LEAD_RECOVERY_NOW=$(cat "{self._clock_file}")"\n'
            "fi\n"
        )
        prolog.chmod(0o755)
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=lrtest",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={self.ctld_port}",
                    f"SlurmdPort={self.slurmd_port}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    f"DefMemPerCPU={self.def_mem_per_cpu}",
                    "SchedulerType=sched/builtin",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    # finished jobs stay visible to squeue (the status check) 10 minutes
                    "MinJobAge=600",
                    "KillWait=5",
                    f"TaskProlog={prolog}",
                    f"StateSaveLocation={b / 'state'}",
                    f"SlurmdSpoolDir={b / 'spool'}",
                    f"SlurmctldPidFile={b / 'run/slurmctld.pid'}",
                    f"SlurmdPidFile={b / 'run/slurmd.pid'}",
                    f"SlurmctldLogFile={b / 'log/slurmctld.log'}",
                    f"SlurmdLogFile={b / 'log/slurmd.log'}",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 {_node_hardware()} "
                    f"RealMemory={self.memory_mb} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={self.node} Default=YES "
                    "MaxTime=INFINITE State=UP",
                    # a partition that takes no job: where a run must stop, not wait
                    f"PartitionName={DOWN_PARTITION} Nodes={self.node} State=DOWN",
                    "",
                ]
            )
        )

    def _in_node_namespace(self, cmd: list[str | None]) -> list[str | None]:
        """``cmd`` in a private mount namespace where ``/etc/slurm`` is this cluster's.

        A compute node reads its slurm.conf from ``/etc/slurm``, and so does
        Snakemake's job-side plugin: it starts each job with ``srun`` after
        dropping every ``SLURM_*`` variable, ``SLURM_CONF`` included. slurmd and
        every job it starts see this cluster's folder there; the machine's own
        ``/etc/slurm`` is not touched and nobody else sees the change.
        """
        if shutil.which("unshare") is None or not Path("/etc/slurm").is_dir():
            raise RuntimeError("needs unshare(1) and an /etc/slurm folder to mount over")
        script = f'mount --bind "{self.conf.parent}" /etc/slurm && exec "$0" "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, *cmd]

    def _spawn(self, name: str, cmd: list[str | None]) -> None:
        self._procs[name] = subprocess.Popen(
            [str(c) for c in cmd],
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=open(self.base / f"log/{name}.out", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def _check_alive(self, name: str) -> None:
        proc = self._procs[name]
        if proc.poll() is not None:
            out = (self.base / f"log/{name}.out").read_text(errors="replace")
            raise RuntimeError(
                f"{name} exited ({proc.returncode}): {(out + self.log(name))[-2000:]}"
            )

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A client command against this cluster."""
        return subprocess.run(
            [_binary(args[0]) or args[0], *args[1:]],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _wait_until_idle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            for name in DAEMONS:
                self._check_alive(name)
            with contextlib.suppress(subprocess.TimeoutExpired):
                state = self.run("sinfo", "-h", "-n", self.node, "-o", "%T").stdout.strip()
                if state == "idle":
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"node {self.node} not idle after {timeout_s:.0f}s (state {state!r}): "
            f"{self.log('slurmctld')[-1500:]} {self.log('slurmd')[-1500:]}"
        )

    @contextlib.contextmanager
    def job_clock(self, now_iso: str):
        """While inside, every job task starts with ``LEAD_RECOVERY_NOW=now_iso``."""
        self._clock_file.write_text(now_iso)
        try:
            yield
        finally:
            self._clock_file.unlink(missing_ok=True)

    def kill_controller(self) -> None:
        """SIGKILL slurmctld, as a crash or a lost host would (the test's own daemon)."""
        proc = self._procs["slurmctld"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def squeue_all(self) -> list[str]:
        """Every job the controller still knows (``id|name|state``)."""
        out = self.run("squeue", "-h", "-t", "all", "-o", "%i|%j|%T").stdout
        return [x for x in out.splitlines() if x.strip()]

    def stop(self) -> None:
        for name in reversed(DAEMONS):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the daemons on `kill`
    with SlurmCluster() as cluster:
        print(f"export SLURM_CONF={cluster.conf}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
