#!/bin/bash
# The post-run step of both batch routes, rendered by `hpcgen jobs` (template:
# merge/merge_verify.sh): the SLURM merge job and the DAG's final node both run it.
#   1. hpcgen merge: checks every shard in {{DIR}}/shards (same spec, complete, chunk ranges with
#      no gap or overlap) and writes {{OUTPUT}}{{MERGE_NOTE}}
#   2. hpcgen verify: the physics checks; exit 1 if one fails (report: *.verify.json).
# --overwrite: a rerun of this step (a retried DAG node) replaces its own earlier output.
set -euo pipefail
# Relative paths in the spec (input files) mean what they meant where `hpcgen jobs` ran.
cd {{WORKDIR}}
hpcgen=({{HPCGEN}})
# HDF5 keeps every source file of a virtual dataset open; past the soft open-file limit (often
# 1024) the remaining sources read as fill values WITHOUT an error. Raise it to the hard limit.
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
export HDF5_USE_FILE_LOCKING=${HDF5_USE_FILE_LOCKING:-FALSE}

t0=$(date +%s.%N)
"${hpcgen[@]}" merge {{DIR}}/shards --out {{OUTPUT}} --overwrite{{MERGE_FLAGS}}
t1=$(date +%s.%N)
echo "hpcgen merge: {{OUTPUT}} in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
"${hpcgen[@]}" verify {{OUTPUT}}
t2=$(date +%s.%N)
echo "hpcgen verify: passed in $(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", b - a }') s"
