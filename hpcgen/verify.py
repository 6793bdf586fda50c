"""``hpcgen verify FILE``: file integrity plus the generator's physics checks, streamed in chunks.

Prints a table on stdout, writes a JSON report, and returns False if any check failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from hpcgen.generators.base import CheckResult
from hpcgen.io import checksums, layout
from hpcgen.io.reader import Reader
from hpcgen.io.writer import check_vds_sources


def integrity_checks(r: Reader) -> list[CheckResult]:
    out = []
    missing_src = check_vds_sources(r.path)
    out.append(
        CheckResult(
            "virtual sources present",
            not missing_src,
            f"{len(missing_src)} missing",
            ", ".join(missing_src[:5]),
        )
    )
    done = r.done
    n_missing = int((~done).sum())
    out.append(
        CheckResult(
            "every chunk written (done bitmap)", n_missing == 0, f"{done.sum()}/{done.size} chunks"
        )
    )
    recorded = r.h5.attrs.get(layout.ATTR_MISSING)
    if recorded is not None and len(recorded):
        ranges = ", ".join(f"[{a},{b})" for a, b in recorded)
        out.append(
            CheckResult(
                "merged without missing ranges", False, ranges, "written with --allow-partial"
            )
        )
    shape_ok = all(r.h5[f.name].shape[0] == r.n_rows for f in r.fields)
    out.append(CheckResult("field lengths match the spec", shape_ok, f"{r.n_rows} rows"))
    return out


def checksum_result(sums: checksums.Checker) -> CheckResult:
    """ "checksums match": every chunk marked done, every field, against /_hpcgen/checksums."""
    if not sums.present:
        return CheckResult(
            "checksums match", True, "none stored", "file written before hpcgen stored checksums"
        )
    return CheckResult(
        "checksums match",
        not sums.mismatches,
        f"{len(sums.mismatches)} mismatch(es) in {sums.checked} chunks",
        sums.describe() if sums.mismatches else "",
    )


def verify_file(path: str | Path) -> tuple[bool, dict[str, Any]]:
    """Integrity, then the generator's checks on the rows of every chunk marked done (rows of
    unfinished chunks hold no data yet; the done-bitmap check reports them)."""
    with Reader(path) as r:
        checks = integrity_checks(r)
        if not missing_sources(checks):
            v = r.generator.verifier()
            sums = checksums.Checker(r.h5, r.chunk_range)
            done = r.done
            # blocks of one chunk each: block i is chunk a + i of the file's range
            for i, (start, data) in enumerate(r.iter_rows(block=r.spec.chunk_size)):
                if done[i]:
                    v.update(data, start + r.row_range[0])
                    sums.update(i, data)
            checks.append(checksum_result(sums))
            checks += v.results()
            checks += r.generator.file_checks(r)
        passed = all(c.passed for c in checks)
        report = {
            "file": str(r.path),
            "generator": r.spec.generator,
            "n_rows": r.n_rows,
            "passed": passed,
            "checks": [c.__dict__ for c in checks],
        }
    return passed, report


def missing_sources(checks: list[CheckResult]) -> bool:
    return any(c.name == "virtual sources present" and not c.passed for c in checks)


def print_table(report: dict[str, Any], stream: TextIO) -> None:
    rows = [
        (("PASS" if c["passed"] else "FAIL"), c["name"], c["value"], c["detail"])
        for c in report["checks"]
    ]
    w = max(len(r[1]) for r in rows)
    print(
        f"verify {report['file']} ({report['generator']}, {report['n_rows']} samples)", file=stream
    )
    for status, name, value, detail in rows:
        extra = f"  ({detail})" if detail else ""
        print(f"  {status}  {name:<{w}}  {value}{extra}", file=stream)
    print("RESULT: " + ("PASS" if report["passed"] else "FAIL"), file=stream)


def write_report(report: dict[str, Any], path: Path) -> None:
    # numpy scalars (np.bool_, np.float64) from generator checks are written as plain JSON
    path.write_text(json.dumps(report, indent=2, default=_plain) + "\n")


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else str(v)
