#!/bin/bash
# HTCondor job body, rendered by `hpcgen jobs condor` (template: condor/wrapper.sh):
#   wrapper.sh A B   runs chunks [A, B) of {{DIR}}/spec.toml into {{DIR}}/shards/.
# --atomic: written as SHARD.partial and renamed when complete; a retry of a complete shard exits
# 0 at once, and a .partial left by a killed attempt is discarded.
set -euo pipefail
# Relative paths in the spec (input files) mean what they meant where `hpcgen jobs` ran.
cd {{WORKDIR}}
first=${1:?usage: wrapper.sh FIRST_CHUNK STOP_CHUNK}
stop=${2:?usage: wrapper.sh FIRST_CHUNK STOP_CHUNK}
shard={{DIR}}/shards/$(printf 'chunks-%09d-%09d.h5' "$first" "$stop")

hpcgen=({{HPCGEN}})
export HDF5_USE_FILE_LOCKING=${HDF5_USE_FILE_LOCKING:-FALSE}
echo "hpcgen condor job on $(hostname): chunks [$first, $stop) -> $shard"
exec "${hpcgen[@]}" run {{DIR}}/spec.toml --chunks "$first:$stop" --atomic --quiet --yes --out "$shard"
