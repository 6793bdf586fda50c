"""``hpcgen catalog DIR``: an inventory of a directory of energy files.

Writes DIR/catalog.json (or ``--out``) with, for every regular file under DIR (recursively), its
path relative to DIR, size and SHA-256; for energy files also the domain, trajectory count,
frames, map shape and pixel statistics (mean, variance, entropy); then per-domain statistics merged
over files and the total size. ``--plot PNG`` draws one sequence per domain as an image strip.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from typing import Any

from hpcgen.errors import UserError

CATALOG = "catalog.json"


def build_catalog(directory: Path, exclude: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The catalog of ``directory`` as a JSON-ready dict (see the module docstring)."""
    # imported here: this module is loaded by every `hpcgen` command (CLI_EXTENSIONS)
    from hpcgen.engine.provenance import sha256_file
    from hpcgen.generators.energy.reader import (
        DomainStats,
        RunningStats,
        file_stats,
        open_energy_file,
    )

    if not directory.is_dir():
        raise UserError(f"not a directory: {directory}")
    skip = {p.resolve() for p in exclude}
    files: list[dict[str, Any]] = []
    domains: dict[str, DomainStats] = {}
    domain_files: dict[str, int] = {}
    total = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if path.resolve() in skip:
            continue
        size = path.stat().st_size
        total += size
        entry: dict[str, Any] = {
            "path": path.relative_to(directory).as_posix(),
            "size_bytes": size,
            "sha256": sha256_file(path),
        }
        info = open_energy_file(path) if path.suffix in (".h5", ".hdf5") else None
        if info is not None:
            st = file_stats(path)
            entry.update(
                domain=info.domain,
                n_trajectories=info.n_trajectories,
                n_steps=info.n_steps,
                shape=list(info.shape),
                stats=st.as_dict(),
            )
            agg = domains.setdefault(info.domain, DomainStats(RunningStats(), RunningStats()))
            agg.pixels.merge_stats(st.pixels)
            agg.entropy.merge_stats(st.entropy)
            agg.n_trajectories += st.n_trajectories
            domain_files[info.domain] = domain_files.get(info.domain, 0) + 1
        files.append(entry)
    return {
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "directory": str(directory.resolve()),
        "files": files,
        "domains": {
            d: {"n_files": domain_files[d], **domains[d].as_dict()} for d in sorted(domains)
        },
        "n_files": len(files),
        "total_size_bytes": total,
    }


def _catalog(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    out = Path(args.out) if args.out else directory / CATALOG
    catalog = build_catalog(directory, exclude=(out,))
    out.write_text(json.dumps(catalog, indent=2) + "\n")
    mb = catalog["total_size_bytes"] / 1e6
    print(
        f"{out}: {catalog['n_files']} files, {mb:.2f} MB, "
        f"domains: {', '.join(catalog['domains']) or 'none'}"
    )
    if args.plot:
        from hpcgen.generators.energy.plot import plot_domains

        energy = [directory / f["path"] for f in catalog["files"] if "domain" in f]
        if not energy:
            raise UserError(f"no energy files in {directory} to plot")
        plot_domains(energy, Path(args.plot))
        print(f"{args.plot}: one sequence per domain")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "catalog",
        help="inventory of a directory of energy files (SHA-256, sizes, per-domain statistics)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", help="directory to scan (recursively)")
    p.add_argument("--out", help=f"catalog path (default: DIR/{CATALOG})")
    p.add_argument("--plot", metavar="PNG", help="also draw one sequence per domain")
    p.set_defaults(func=_catalog)
