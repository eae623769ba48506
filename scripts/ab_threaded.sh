#!/usr/bin/env bash
# A/B speed of two commits of paipa, the two builds alternated in one run,
# so that both sides see the same machine load.
#
# Usage: scripts/ab_threaded.sh <before-commit> <after-commit> [rounds]
#        (rounds: 3 unless given)
#
# Each commit gets a git worktree at $AB_DIR/<sha> and its own target dir
# at $AB_DIR/target-<sha> (AB_DIR is /work/ab unless set; <sha> is 12 hex
# digits), both reused by later runs. Builds run under `nice -n 19`, one at
# a time, with each example's documented features (docs/BENCHMARKS.md):
# bench_threaded and bench_logs without features, async_fanout with
# `async`. A new target dir starts as a copy of $AB_SEED_TARGET if set
# (a cargo target dir holding `release/`), else of the other side's target
# dir if it exists, so that the dependencies are not compiled again.
#
# Workloads, in each round both sides one after the other (before first in
# odd rounds, after first in even rounds):
#   hop    `bench_threaded trivial defaults`: 3 trivial stages, 10 M u64
#          items, default capacity; ns/item/hop (median of 5).
#   cpu    `bench_threaded cpu "2 workers, defaults"`: one CPU-bound
#          stage, 2 M items; the row "paipa, 2 workers, defaults": its time
#          and its speed-up over paipa with 1 worker in the same process
#          (median of 5). A bench_threaded that predates the row filter of
#          `cpu` ignores it and times every variant (rayon, pipeliner,
#          pipelines...: about 80 s more per run); those rows stay in the
#          raw output.
#   logs   `bench_logs $AB_LOG_LINES Stage::fold` (5000000 unless set): the
#          log job with `Stage::fold` against a plain loop in the same
#          process; wall time, wall speed-up and CPU as multiples of the
#          loop's (median of 3). The example writes its input itself, from
#          a fixed seed, to the temp dir and removes it at the end; it
#          takes no input file, so each run writes the same bytes again
#          (781 MB for 5 M lines), before anything is timed.
#   async  `async_fanout` (paipa mode): 10,000 requests of 20 ms, 200 in
#          flight, a CPU stage, a file sink; wall time and peak RSS.
# AB_WORKLOADS="hop cpu logs async" picks a subset, in that order;
# AB_BUILD_ONLY=1 prepares and builds both sides, and runs nothing.
#
# Raw outputs go to $AB_DIR/runs/<before>-<after>-<time>/; the markdown
# table goes to stdout at the end.
set -euo pipefail

usage() {
    echo "usage: $0 <before-commit> <after-commit> [rounds]" >&2
    exit 2
}
[[ $# -ge 2 && $# -le 3 ]] || usage
ROUNDS=${3:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || usage

REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
AB_DIR=${AB_DIR:-/work/ab}
AB_LOG_LINES=${AB_LOG_LINES:-5000000}
AB_WORKLOADS=${AB_WORKLOADS:-hop cpu logs async}
mkdir -p "$AB_DIR"

full_sha() {
    git -C "$REPO" rev-parse --verify --quiet "$1^{commit}" || {
        echo "not a commit: $1" >&2
        exit 2
    }
}
BEFORE=$(full_sha "$1")
AFTER=$(full_sha "$2")
B=${BEFORE:0:12}
A=${AFTER:0:12}

# Worktree, target dir and release builds of one commit.
prepare() {
    local sha=$1 short=${1:0:12} other=$2
    local wt=$AB_DIR/$short target=$AB_DIR/target-$short
    if [[ -d $wt ]]; then
        local head
        head=$(git -C "$wt" rev-parse HEAD)
        [[ $head == "$sha" ]] || {
            echo "$wt is at $head, not $sha" >&2
            exit 1
        }
    else
        git -C "$REPO" worktree add --detach "$wt" "$sha" >&2
    fi
    if [[ ! -d $target ]]; then
        local seed=${AB_SEED_TARGET:-$AB_DIR/target-${other:0:12}}
        if [[ -d $seed/release ]]; then
            echo "== seeding $target from $seed" >&2
            mkdir -p "$target"
            cp -a "$seed/release" "$target/"
            rm -rf "$target/release/incremental"
        fi
    fi
    echo "== building $short (nice -n 19)" >&2
    (
        cd "$wt"
        export CARGO_TARGET_DIR=$target
        nice -n 19 cargo build --release --example bench_threaded --example bench_logs >&2
        nice -n 19 cargo build --release --features async --example async_fanout >&2
    )
}

prepare "$BEFORE" "$AFTER"
[[ $AFTER == "$BEFORE" ]] || prepare "$AFTER" "$BEFORE"
[[ ${AB_BUILD_ONLY:-} ]] && exit 0

RUNS=$AB_DIR/runs/$B-$A-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUNS"
trim() { sed 's/^ *//; s/ *$//'; }

# Runs one workload on one side; prints its figure (or "?" with the raw
# output's path on stderr when the line is not found).
run_one() {
    local w=$1 side=$2 short=$3 round=$4
    local bin=$AB_DIR/target-$short/release/examples
    local raw=$RUNS/$round-$side-$w.txt fig
    # A failing binary leaves its output in $raw; its figure shows as "?".
    exe() { "$@" >"$raw" 2>&1 || echo "$w on $side exited with $? in round $round" >&2; }
    case $w in
    hop)
        exe "$bin/bench_threaded" trivial defaults
        fig=$(awk -F'|' '$2 ~ /^ paipa, defaults $/ {print $6}' "$raw" | trim)
        ;;
    cpu)
        exe "$bin/bench_threaded" cpu "2 workers, defaults"
        fig=$(awk -F'|' '$2 ~ /^ paipa, 2 workers, defaults $/ {gsub(/ /, "", $4); print $3 "(" $4 "x)"}' "$raw" | trim)
        ;;
    logs)
        exe "$bin/bench_logs" "$AB_LOG_LINES" Stage::fold
        fig=$(awk -F'|' '$2 ~ /Stage::fold/ {gsub(/^ +| +$/, "", $3); gsub(/ faster/, "", $6); gsub(/ /, "", $6); gsub(/ /, "", $7); print $3 " (" $6 ") / CPU " $7}' "$raw")
        ;;
    async)
        exe "$bin/async_fanout"
        fig=$(sed -n 's/^paipa: .* written in \([^ ]*\) .*peak RSS \([0-9.]* MiB\).*/\1, \2/p' "$raw")
        ;;
    *)
        echo "unknown workload $w" >&2
        exit 2
        ;;
    esac
    if [[ -z $fig ]]; then
        echo "no figure for $w on $side in round $round: see $raw" >&2
        fig="?"
    fi
    echo "$fig"
}

declare -A RESULT
START=$(date +%s)
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="before after"; else order="after before"; fi
    for w in $AB_WORKLOADS; do
        for side in $order; do
            if [[ $side == before ]]; then short=$B; else short=$A; fi
            echo "== round $r/$ROUNDS: $w, $side ($short)" >&2
            fig=$(run_one "$w" "$side" "$short" "$r")
            key=$w,$side
            RESULT[$key]=${RESULT[$key]:+${RESULT[$key]}; }$fig
        done
    done
done
SECS=$(($(date +%s) - START))

label() {
    case $1 in
    hop) echo "hop: 3 trivial stages, 10 M u64, defaults (ns/item/hop)" ;;
    cpu) echo "CPU stage, 2 workers, 2 M items (time, speed-up over 1 worker)" ;;
    logs) echo "log job, \`Stage::fold\`, $AB_LOG_LINES lines (wall, speed-up / CPU vs the loop)" ;;
    async) echo "async fan-out, 10,000 x 20 ms, 200 in flight (time, peak RSS)" ;;
    esac
}

echo "A/B on $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)):" \
    "before $B, after $A, $ROUNDS round(s) alternated, $SECS s in all; raw outputs in $RUNS"
echo
echo "| workload | before (each round) | after (each round) |"
echo "|---|---|---|"
for w in $AB_WORKLOADS; do
    echo "| $(label "$w") | ${RESULT[$w,before]} | ${RESULT[$w,after]} |"
done
