#!/bin/bash
# HTCondor job body, rendered by `hpcgen jobs condor` (template: condor/wrapper.sh):
#   wrapper.sh A B   runs chunks [A, B) of the frozen {{DIR}}/spec.toml into its shard
#   chunks-A-B.h5 ({{SHARD_NOTE}}).
# --atomic: written as SHARD.partial and renamed when complete; a retry of a complete shard exits
# 0 at once, and a .partial left by a killed attempt is discarded.
set -euo pipefail
{{WRAPPER_WHERE}}
first=${1:?usage: wrapper.sh FIRST_CHUNK STOP_CHUNK}
stop=${2:?usage: wrapper.sh FIRST_CHUNK STOP_CHUNK}
shard={{SHARD_DIR}}$(printf 'chunks-%09d-%09d.h5' "$first" "$stop")

hpcgen=({{HPCGEN}})
export HDF5_USE_FILE_LOCKING=${HDF5_USE_FILE_LOCKING:-FALSE}
echo "hpcgen condor job on $(hostname): chunks [$first, $stop) -> $shard"
exec "${hpcgen[@]}" run {{JOB_SPEC}} --chunks "$first:$stop" --atomic --yes --out "$shard"
