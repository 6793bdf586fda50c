"""A real one-node SLURM for tests: munged, slurmctld and slurmd on localhost in a scratch folder.

    from slurm_cluster import slurm_fixture  # noqa: F401  (the module-scoped fixture `slurm`)

    def test_x(slurm):
        job = slurm.sbatch(script)          # job id
        slurm.wait([job])                   # {task id: state}

Every daemon runs in the foreground as a child of the test process, on its own ports, with its
own munge key, socket, state and spool folders, so that two test runs on one machine never meet.
Teardown cancels what is left and stops the daemons by their PIDs (SIGTERM, then SIGKILL), also
when a test failed. Without the Debian packages ``slurm-wlm munge`` (scripts/setup.sh installs
them) or without root, the fixture skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "squeue", "scancel")
#: job states after which a job never runs again
TERMINAL = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}


def missing_reason() -> str | None:
    """Why a cluster cannot start here, or None."""
    missing = [
        b
        for b in (*DAEMONS, *CLIENTS)
        if shutil.which(b) is None and not Path("/usr/sbin", b).exists()
    ]
    if missing:
        return (
            f"SLURM test cluster needs the Debian packages slurm-wlm and munge "
            f"(missing: {', '.join(missing)}; scripts/setup.sh installs them)"
        )
    if os.geteuid() != 0:
        return "SLURM test cluster runs slurmd as root; these tests need root"
    return None


def _exe(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    # --- clients ----------------------------------------------------------------------------------
    def run(
        self, *cmd: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*cmd], env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n"
                f"{proc.stderr}\n{self.logs()}"
            )
        return proc

    def sbatch(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Submit; returns the job id."""
        out = self.run(_exe("sbatch"), "--parsable", *args, env=env).stdout.strip()
        return out.split(";")[0]

    def states(self, job_id: str) -> dict[str, str]:
        """{job id (array tasks: ARRAYID_TASK): state} from ``scontrol show job -o``."""
        proc = self.run(_exe("scontrol"), "show", "job", "-o", job_id, check=False)
        out: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            jid = re.search(r"\bJobId=(\d+)", line)
            arr = re.search(r"\bArrayJobId=(\d+) ArrayTaskId=(\S+)", line)
            state = re.search(r"\bJobState=(\S+)", line)
            if jid and state:
                key = f"{arr.group(1)}_{arr.group(2)}" if arr else jid.group(1)
                out[key] = state.group(1)
        return out

    def times(self, job_id: str, key: str = "EndTime") -> list[str]:
        """``StartTime``/``EndTime`` of a job (each task of an array), ISO strings (1 s steps)."""
        proc = self.run(_exe("scontrol"), "show", "job", "-o", job_id)
        return re.findall(rf"\b{key}=(\S+)", proc.stdout)

    def wait(self, job_ids: list[str], timeout: float = 120) -> dict[str, str]:
        """Wait until every job (every task of an array) is in a terminal state."""
        deadline = time.monotonic() + timeout
        while True:
            states: dict[str, str] = {}
            for j in job_ids:
                states.update(self.states(j))
            # an array's pending tasks show as one record "ID_[a-b]": not finished
            if (
                states
                and all(s in TERMINAL for s in states.values())
                and len(states) >= len(job_ids)
            ):
                return states
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"jobs {job_ids} not finished after {timeout} s: {states}\n{self.logs()}"
                )
            time.sleep(0.5)

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.root / "log" / name
            if p.exists():
                parts.append(f"--- {p} (tail)\n" + "\n".join(p.read_text().splitlines()[-25:]))
        return "\n".join(parts)

    # --- daemons ----------------------------------------------------------------------------------
    def _spawn(self, name: str, *cmd: str) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "w")
        self.procs[name] = subprocess.Popen(
            [*cmd], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def start(self, timeout: float = 30) -> None:
        self._spawn(
            "munged",
            _exe("munged"),
            "--foreground",
            "--force",
            f"--socket={self.root / 'munge' / 'munge.socket'}",
            f"--key-file={self.root / 'munge' / 'munge.key'}",
            f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--pid-file={self.root / 'munge' / 'munged.pid'}",
            f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        )
        self._wait_for(lambda: (self.root / "munge" / "munge.socket").exists(), 10, "munged socket")
        self._spawn("slurmctld", _exe("slurmctld"), "-D", "-f", str(self.conf))
        self._spawn("slurmd", _exe("slurmd"), "-D", "-f", str(self.conf))
        self._wait_for(self._idle, timeout, "the node to become idle")

    def _idle(self) -> bool:
        proc = self.run(_exe("scontrol"), "show", "node", "-o", check=False, timeout=10)
        return proc.returncode == 0 and re.search(r"State=IDLE\b", proc.stdout) is not None

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {p.returncode} while waiting for "
                        f"{what}\n{self._stdout(name)}\n{self.logs()}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout} s waiting for {what}\n{self.logs()}")
            time.sleep(0.3)

    def _stdout(self, name: str) -> str:
        p = self.root / "log" / f"{name}.stdout"
        return p.read_text()[-3000:] if p.exists() else ""

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged by PID."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run(_exe("scancel"), "--full", "--user=root", check=False, timeout=10)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    q = self.run(_exe("squeue"), "-h", "-o", "%i", check=False, timeout=10)
                    if q.returncode != 0 or not q.stdout.strip():
                        break
                    time.sleep(0.3)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def write_config(root: Path) -> SlurmCluster:
    """Folders, a fresh munge key and slurm.conf for a one-node cluster under root."""
    for sub in ("munge", "log", "state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "munge").chmod(0o755)  # munged checks its socket folder
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)  # munged refuses a key readable by others
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    extra = ""
    if cpus < 2:  # the MPI test needs two task slots; let the config override the hardware
        cpus, extra = 2, "SlurmdParameters=config_overrides\n"
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=hpcgentest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / "munge" / "munge.socket"}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmi2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MaxArraySize=1001
MinJobAge=600
{extra}NodeName={host} CPUs={cpus} RealMemory={int(_memory_mb() * 0.8)} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    env = {**os.environ, "SLURM_CONF": str(conf), "HDF5_USE_FILE_LOCKING": "FALSE"}
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SALLOC_"))]:
        if var != "SLURM_CONF":
            del env[var]
    return SlurmCluster(root=root, conf=conf, env=env)


@pytest.fixture(scope="module", name="slurm")
def slurm_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running one-node SLURM for the tests of one module; stopped by PID afterwards."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = write_config(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    """``python tests/slurm_cluster.py DIR``: run a one-node SLURM in DIR until Ctrl-C or SIGTERM
    (to try the rendered scripts by hand: export the printed SLURM_CONF in another shell)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("dir", type=Path, help="scratch folder for keys, state, spool and logs")
    args = p.parse_args(argv)
    reason = missing_reason()
    if reason:
        print(f"slurm_cluster: {reason}")
        return 2
    cluster = write_config(args.dir.resolve())
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}", flush=True)
        while not stop:
            time.sleep(0.5)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
