"""Site options of the batch systems: what a cluster needs before it accepts a job (an account, a
QOS, a node feature, a reservation, a pool's accounting group or requirements, extra submit lines).

They change where and under which budget jobs run, never a byte of data, so they are not part of
the frozen spec: ``hpcgen jobs`` writes them into every rendered script and into jobs-*.json.
Values go unquoted into ``#SBATCH`` lines and submit descriptions, so each is checked here to be
one line of the characters its batch system accepts there; a bad value is a one-line user error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from hpcgen.errors import UserError

# SLURM account, QOS and reservation names (a reservation may be a comma-separated list)
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_.,:+@-]+$")
# a --constraint feature expression: names joined by & | , * with [ ] ( ) and ! (no spaces)
_SLURM_CONSTRAINT = re.compile(r"^[A-Za-z0-9_.,:|&*()\[\]!-]+$")
# an HTCondor accounting group: group_physics.alice
_CONDOR_GROUP = re.compile(r"^[A-Za-z0-9_.-]+$")
# a submit command: "key = value", "+Attr = value" or "MY.Attr = value"
_CONDOR_LINE = re.compile(r"^(\+?[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(\S.*)$")

#: sbatch options the rendered scripts set themselves, with the hpcgen option to use instead
#: (or None: the route relies on it, e.g. the array index, the merge job's dependency, the logs)
SBATCH_OWN: dict[str, str | None] = {
    "--partition": "--partition",
    "-p": "--partition",
    "--time": "--time",
    "-t": "--time",
    "--mem": "--mem",
    "--mem-per-cpu": "--mem",
    "--cpus-per-task": "--cpus",
    "-c": "--cpus",
    "--account": "--account",
    "-A": "--account",
    "--qos": "--qos",
    "-q": "--qos",
    "--constraint": "--constraint",
    "-C": "--constraint",
    "--reservation": "--reservation",
    "--array": None,
    "-a": None,
    "--dependency": None,
    "-d": None,
    "--output": None,
    "-o": None,
    "--error": None,
    "-e": None,
    "--ntasks": None,
    "-n": None,
    "--wrap": None,
}

#: submit commands the rendered descriptions set themselves (lower case), as SBATCH_OWN
CONDOR_OWN: dict[str, str | None] = {
    "request_cpus": "--cpus",
    "request_memory": "--mem",
    "request_gpus": "--gpus",
    "max_retries": "--retries",
    "accounting_group": "--accounting-group",
    "requirements": "--requirements",
    **dict.fromkeys(
        (
            "universe",
            "executable",
            "arguments",
            "initialdir",
            "output",
            "error",
            "log",
            "environment",
            "retry_until",
            "should_transfer_files",
            "when_to_transfer_output",
            "success_exit_code",
            "preserve_relative_paths",
            "transfer_input_files",
            "transfer_output_files",
            "transfer_output_remaps",
            "queue",
        )
    ),
}


def _one_line(value: str, option: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\0"):
        raise UserError(f"{option}: expected one non-empty line, got {value!r}")
    return value.strip()


def _refuse_own(name: str, own: dict[str, str | None], option: str, line: str) -> None:
    if name not in own:
        return
    instead = own[name]
    if instead:
        raise UserError(f"{option} {line!r}: hpcgen sets {name} itself; use its option {instead}")
    raise UserError(f"{option} {line!r}: hpcgen sets {name} itself and the jobs rely on it")


def sbatch_line(text: str) -> str:
    """``--mail-type=END`` (or ``#SBATCH --mail-type=END``) -> ``#SBATCH --mail-type=END``."""
    line = _one_line(text, "--sbatch-extra")
    line = re.sub(r"^#SBATCH\s+", "", line)
    if not line.startswith("-") or "#" in line:
        raise UserError(
            f"--sbatch-extra {text!r}: expected an sbatch option such as --mail-type=END "
            "(one per --sbatch-extra, without '#')"
        )
    long = re.match(r"^--[A-Za-z][A-Za-z0-9-]*", line)
    name = long.group(0) if long else line[:2]  # short options: -A name or -Aname
    _refuse_own(name, SBATCH_OWN, "--sbatch-extra", text)
    return f"#SBATCH {line}"


def condor_line(text: str) -> str:
    """``+ProjectName = "physics"`` or ``rank = Mips`` -> the same submit command, checked."""
    line = _one_line(text, "--condor-extra")
    m = _CONDOR_LINE.match(line)
    if not m:
        raise UserError(
            f'--condor-extra {text!r}: expected a submit command "key = value" or '
            '"+Attribute = value"'
        )
    _refuse_own(m.group(1).lower(), CONDOR_OWN, "--condor-extra", text)
    return f"{m.group(1)} = {m.group(2)}"


@dataclass(frozen=True)
class SlurmSite:
    """``#SBATCH`` lines every rendered SLURM script carries (driver, arrays, merge, MPI job)."""

    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    reservation: str | None = None
    extra: tuple[str, ...] = ()  # sbatch options, one per line, e.g. "--mail-type=END"

    def __post_init__(self) -> None:
        for key, pattern in (
            ("account", _SLURM_NAME),
            ("qos", _SLURM_NAME),
            ("reservation", _SLURM_NAME),
            ("constraint", _SLURM_CONSTRAINT),
        ):
            value = getattr(self, key)
            if value is not None and not pattern.match(value):
                raise UserError(
                    f"--{key} {value!r}: not a SLURM {key} (letters, digits and "
                    f"{'_ . , : | & * ( ) [ ] ! -' if key == 'constraint' else '_ . , : + @ -'} "
                    "only)"
                )
        object.__setattr__(self, "extra", tuple(sbatch_line(x) for x in self.extra))

    def lines(self) -> list[str]:
        out = [
            f"#SBATCH --{key}={getattr(self, key)}"
            for key in ("account", "qos", "constraint", "reservation")
            if getattr(self, key) is not None
        ]
        return out + list(self.extra)

    def as_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "qos": self.qos,
            "constraint": self.constraint,
            "reservation": self.reservation,
            "sbatch_extra": list(self.extra),
        }


@dataclass(frozen=True)
class CondorSite:
    """Submit commands of the generation jobs (``accounting_group``, ``requirements``, extra
    lines). The merge job gets the accounting group and the extra lines too, and the requirements
    where it runs in the pool (with a shared file system; without one it runs on the access
    point, ``universe = local``)."""

    accounting_group: str | None = None
    requirements: str | None = None  # a ClassAd expression, ANDed by HTCondor with its own
    extra: tuple[str, ...] = ()  # submit commands, e.g. '+ProjectName = "physics"'

    def __post_init__(self) -> None:
        g = self.accounting_group
        if g is not None and not _CONDOR_GROUP.match(g):
            raise UserError(
                f"--accounting-group {g!r}: not an accounting group (letters, digits, _ . -)"
            )
        if self.requirements is not None:
            object.__setattr__(self, "requirements", _one_line(self.requirements, "--requirements"))
        object.__setattr__(self, "extra", tuple(condor_line(x) for x in self.extra))

    def lines(self, requirements: bool = True) -> list[str]:
        out = []
        if self.accounting_group is not None:
            out.append(f"accounting_group        = {self.accounting_group}")
        if requirements and self.requirements is not None:
            out.append(f"requirements            = {self.requirements}")
        return out + list(self.extra)

    def as_dict(self) -> dict[str, object]:
        return {
            "accounting_group": self.accounting_group,
            "requirements": self.requirements,
            "condor_extra": list(self.extra),
        }


def block(lines: Iterable[str], none: str) -> str:
    """Lines for a ``{{...}}`` placeholder; a comment saying so when there are none."""
    lines = list(lines)
    return "\n".join(lines) if lines else f"# ({none})"
