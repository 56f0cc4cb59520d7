#!/usr/bin/env bash
# GPU tests of the CUDA backend, packed here and run on a GPU machine that has no Java.
#
#   scripts/gpu/run.sh [pack]   on a build machine (JDK 25, Maven, nvcc): builds lathe-core, lathe-cpu (if
#                               present) and lathe-cuda, makes a portable Java runtime, and puts runtime, jars,
#                               test classes and this script into .device/ at the root of the main checkout.
#   bash .device/run.sh device  on the GPU machine, from the repository root: unpacks the runtime, prints the
#                               doctor report, runs every @Tag("gpu") test, then first op timings; logs and JUnit XML go to $OUT
#                               (or ./gpu-out). Extra JVM flags: LATHE_TEST_JVM_FLAGS (e.g. -Dlathe.test.seed=42).
#   bash .device/run.sh check   a short call: GPU tests, op timings, batch-1 latency with and without decode graphs (with
#                               its transformers peer when LATHE_CHECK_PEER=1), TTFT at 2048, batch-256 decode and
#                               128/128 throughput runs, each under its own limit; JSON records go into records.tar
#   bash .device/run.sh latency  issue 4's batch-1 records (2048-token TTFT, 128/128 decode) with their transformers peer
#   bash .device/run.sh ab      switches against the defaults in one call (see ab below)
#   bash .device/run.sh profile  the device time of each op in a 2048-token prefill step and a decode step (see profile below)
#   bash .device/run.sh throughput   offline throughput, 3000 requests, with the transformers batch-64 peer
#   bash .device/run.sh serving      serving sweep against `lathe serve` (pack with LATHE_PACK_SERVER=1)
#   bash .device/run.sh pairs        offline throughput at other lengths (LATHE_PAIRS="IN/OUT:REQUESTS ...")
#   bash .device/run.sh tests        the GPU tests alone
#   bash .device/run.sh quick        most GPU tests, batch-1 decode, batch 4 and 8 with two gemv row limits
#   bash .device/run.sh records      GPU tests, then issue 5's 128/128 record with its peer, and pairs (see records below)
#   bash .device/run.sh ncu          Nsight Compute counters of chosen kernels in one TTFT run (see ncu_prefill below)
#   bash .device/run.sh nsys         an Nsight Systems timeline of TTFT runs, as CSV (see nsys_ttft below)
#   bash .device/run.sh ttft         the 2048-token TTFT with prefills back to back and with decode steps between (see ttft_grid)
set -euo pipefail
mode=${1:-pack}
console_version=1.14.1   # JUnit Platform of JUnit Jupiter 5.14.1

pack() {
  local src dest
  src=$(git rev-parse --show-toplevel)
  # .device lives in the main checkout (the tree that travels to the GPU machine), also when run from a worktree
  dest=${LATHE_DEVICE_DIR:-$(cd "$(git rev-parse --git-common-dir)/.." && pwd)/.device}
  export JAVA_HOME=${JAVA_HOME_25:-/usr/lib/jvm/temurin-25-jdk-amd64}
  local modules=lathe-core,lathe-cuda
  [ -d "$src/lathe-cpu" ] && modules=lathe-core,lathe-cpu,lathe-cuda
  echo "building $modules in $src"
  # the console launcher brings JUnit itself; the tokenizer (18 MB of natives), jqwik and byte-buddy are
  # not used by the GPU tests and would push the pack over its 64 MiB budget
  local exclude=${LATHE_PACK_EXCLUDE_GROUPS:-org.junit.jupiter,org.junit.platform,org.opentest4j,org.apiguardian,ai.djl,ai.djl.huggingface,net.jqwik,net.bytebuddy}
  mkdir -p "$dest"
  rm -rf "$dest/lib" "$dest/test-classes"
  mkdir -p "$dest/lib" "$dest/test-classes"
  # one reactor run, so copy-dependencies sees the freshly packaged module jars
  (cd "$src" && mvn -B -q -o -DskipTests package dependency:copy-dependencies -pl "$modules" -am -DincludeScope=test \
      -DexcludeGroupIds="$exclude" -DoutputDirectory="$dest/lib")
  if ! grep -q '^built=true' "$src/lathe-cuda/target/classes/dev/lathe/cuda/kernels/kernels.properties"; then
    echo "the CUDA kernels were not built (no nvcc?): nothing to test on a GPU" >&2
    exit 1
  fi
  cp "$src"/lathe-cuda/target/lathe-cuda-*.jar "$dest/lib/"
  [ -d "$src/lathe-cpu" ] && cp "$src"/lathe-cpu/target/lathe-cpu-*.jar "$dest/lib/"
  cp -r "$src/lathe-cuda/target/test-classes/." "$dest/test-classes/"
  local console=$HOME/.m2/repository/org/junit/platform/junit-platform-console-standalone/$console_version/junit-platform-console-standalone-$console_version.jar
  if [ ! -f "$console" ]; then
    mvn -B -q dependency:get -Dartifact=org.junit.platform:junit-platform-console-standalone:$console_version
  fi
  cp "$console" "$dest/lib/"
  # the libraries Nsight's trace importer needs and GPU machines may lack (libdw and what it links), from this
  # machine when it has them: `nsys` mode imports its trace with them (under 2 MB)
  rm -rf "$dest/nsys-libs"
  mkdir -p "$dest/nsys-libs"
  local lib
  for lib in libdw.so.1 libelf.so.1 libbz2.so.1.0 liblzma.so.5; do
    [ -e "/usr/lib/x86_64-linux-gnu/$lib" ] && cp -L "/usr/lib/x86_64-linux-gnu/$lib" "$dest/nsys-libs/"
  done
  if [ ! -f "$dest/jre.tar.xz" ] || [ "${LATHE_REBUILD_JRE:-0}" = 1 ]; then
    # the team's shared tool beside the checkout (shared/tools/device-jre.sh) makes DIR/jre.tar.xz, a
    # jlinked Java 25 runtime; LATHE_DEVICE_JRE_TOOL names another script with the same contract
    local jre_tool=${LATHE_DEVICE_JRE_TOOL:-$src/../shared/tools/device-jre.sh}
    if [ ! -x "$jre_tool" ]; then
      echo "no runtime builder at $jre_tool: set LATHE_DEVICE_JRE_TOOL to a script that writes DIR/jre.tar.xz" >&2
      exit 1
    fi
    "$jre_tool" "$dest"
  fi
  # the CLI for `lathe bench` on the GPU (synthetic models need no tokenizer: DJL stays behind)
  (cd "$src" && mvn -B -q -o -DskipTests package -pl lathe-cli -am)
  # one lib folder for tests and CLI; the tokenizer and chat templates (DJL, jinjava and what they pull in)
  # are not used by the GPU runs and would push the pack past its budget
  cp "$src/lathe-cli/target/lathe-cli.jar" "$dest/lib/"
  for j in "$src"/lathe-cli/target/lib/*.jar; do
    [ -f "$dest/lib/$(basename "$j")" ] || cp "$j" "$dest/lib/"
  done
  (cd "$dest/lib" && rm -f tokenizers-* api-0* jna-* jinjava-* re2j-* big-math-* javassist-* snakeyaml-* \
      jackson-dataformat-yaml-* commons-compress-* commons-io-* commons-net-* commons-lang3-* commons-math* algebra-* \
      java-ipv6-* hubspot-style-* derive4j-* encode-* gson-* jackson-datatype-jdk8-*)
  if [ "${LATHE_PACK_SERVER:-0}" = 1 ]; then
    # a serving pack: the server without gRPC (the sweep speaks HTTP; serve runs with --no-grpc), no GPU
    # tests, one Guava; the pack and the checkout together stay under 64 MiB
    (cd "$dest/lib" && rm -f junit-platform-console-standalone-* assertj-* grpc-* proto-google-* protobuf-* perfmark-* \
        animal-sniffer-* helidon-webserver-grpc-* helidon-grpc-* && ls guava-*.jar | sort -V | head -n -1 | xargs -r rm -f)
    rm -rf "$dest/test-classes"
  else
    # the server's HTTP, gRPC and metrics stack stays behind unless a serving run needs it (LATHE_PACK_SERVER=1)
    (cd "$dest/lib" && rm -f guava-* immutable* checker-qual-* error_prone* j2objc* failureaccess-* listenablefuture-* \
        jsr305-* annotations-* commons-* grpc-* proto-* protobuf-* prometheus-* micrometer-* helidon-* HdrHistogram-* \
        LatencyUtils-* perfmark-* animal-sniffer-*)
  fi
  git -C "$src" rev-parse HEAD > "$dest/commit.txt" 2>/dev/null || echo unknown > "$dest/commit.txt"
  cp "$src/scripts/gpu/run.sh" "$dest/run.sh"
  echo "packed into $dest: $(du -sh "$dest" | cut -f1) ($(ls "$dest/lib" | wc -l) jars)"
  du -sh "$dest"/* | sed 's/^/  /'
}

# What every mode on the GPU machine starts with: $OUT (or ./gpu-out), the unpacked Java runtime, the
# commit the pack was built from, and the commands: JAVA, JVM_FLAGS, LATHE (the CLI) and TEST_CP (jars plus
# test classes, JUnit's console launcher left out).
DEV=.device
setup() {
  [ -f "$DEV/jre.tar.xz" ] || { echo "no $DEV/jre.tar.xz: run scripts/gpu/run.sh pack on the build machine first" >&2; exit 1; }
  OUT_DIR=${OUT:-$PWD/gpu-out}
  mkdir -p "$OUT_DIR" /tmp/lathe-jre
  [ -x /tmp/lathe-jre/jre/bin/java ] || tar -C /tmp/lathe-jre -xJf "$DEV/jre.tar.xz"
  JAVA=/tmp/lathe-jre/jre/bin/java
  # shellcheck disable=SC2206
  JVM_FLAGS=(--enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector -Xss4m ${LATHE_TEST_JVM_FLAGS:-})
  LATHE=("$JAVA" "${JVM_FLAGS[@]}" -cp "$DEV/lib/*" dev.lathe.cli.Main)
  TEST_CP="$DEV/test-classes"
  local j
  for j in "$DEV"/lib/*.jar; do
    case "$j" in *junit-platform-console-standalone*) ;; *) TEST_CP="$TEST_CP:$j" ;; esac
  done
  # warm-up prefills before a timed TTFT: the JIT compiles the host side of a step (metadata, uploads, the op calls)
  # only after dozens of steps, as a serving engine has long done. A run of prefills alone enters ModelRunner.run and
  # LlamaModel.forward once a step, so their loops are compiled only once their back-edge counts build up (on the CPU
  # backend, 1500 tokens, one run sampled every 10th step: the step's token loop took 86-130 us at steps 1-31, 8.5 us at
  # the 41st, about 5.5 us from the 71st). On an H100 (session 12, `profile`, one profiled step each), the host time from
  # the step's start to the first qkv GEMM queued was 0.66 and 0.92 ms in two runs after 30 warm-ups and 0.45 ms after
  # 150, the device's gaps between ops 0.58-0.68 against 0.48 ms.
  TTFT_WARMUP=${LATHE_TTFT_WARMUP:-150}
  LATHE_COMMIT=$(cat "$DEV/commit.txt" 2>/dev/null || echo unknown)
  export LATHE_COMMIT
  CARD=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo unknown)
}

# The @Tag("gpu") tests under a time limit: gpu_tests LIMIT LOG [more console-launcher options]. The log ends with
# the exit code; so does the function.
gpu_tests() {
  local limit=$1 log=$2 rc
  shift 2
  timeout "$limit" "$JAVA" "${JVM_FLAGS[@]}" -jar "$DEV"/lib/junit-platform-console-standalone-*.jar execute \
      --class-path "$TEST_CP" --scan-class-path "$DEV/test-classes" --include-tag gpu --details=tree --disable-banner \
      --disable-ansi-colors "$@" > "$log" 2>&1
  rc=$?
  echo "gpu tests exit code: $rc" >> "$log"
  return "$rc"
}

# LATHE_WITH: the CLI command with one more JVM flag (none when FLAG is empty): lathe_with FLAG
lathe_with() {
  local -a extra=() flags=()
  local cp="$DEV/lib/*" f
  [ -n "${1:-}" ] && IFS=, read -r -a extra <<< "$1"   # several flags: comma-separated
  for f in "${extra[@]}"; do
    # cp=JAR puts JAR ahead of the pack's jars: an earlier build of a module, for a same-call A/B
    case "$f" in cp=*) cp="${f#cp=}:$cp" ;; *) flags+=("$f") ;; esac
  done
  LATHE_WITH=("$JAVA" "${JVM_FLAGS[@]}" "${flags[@]}" -cp "$cp" dev.lathe.cli.Main)
}

# The transformers batch-64 throughput peer at 128/128, written into RECORD as peer_same_run:
# peer_throughput RECORD LIMIT LOG
peer_throughput() {
  local record=$1 limit=$2 log=$3
  [ -f tools/peers/hf_latency.py ] && [ "${LATHE_SKIP_PEER:-0}" != 1 ] || return 0
  (cd tools/peers && timeout "$limit" python3 hf_latency.py --preset llama-3-8b --skip-latency --throughput-batch 64 \
      --throughput-input-len 128 --throughput-output-len 128 --throughput-modes compile \
      --json /tmp/lathe-peer-throughput.json) >> "$log" 2>&1
  python3 - "$record" /tmp/lathe-peer-throughput.json <<'PY'
import json, os, sys
rec, peer = sys.argv[1], sys.argv[2]
if os.path.exists(rec) and os.path.exists(peer):
    d = json.load(open(rec)); d["peer_same_run"] = json.load(open(peer)); json.dump(d, open(rec, "w"), indent=2)
PY
}

# One offline throughput record: throughput_pair IN/OUT:REQUESTS LIMIT LOG, the record in $OUT_DIR; more bench
# options in LATHE_PAIR_ARGS (e.g. "--guarantee-no-evict --max-num-seqs 512").
throughput_pair() {
  local spec=$1 limit=$2 log=$3 in_len out_len n
  in_len=${spec%%/*}; out_len=${spec#*/}; out_len=${out_len%%:*}; n=${spec##*:}
  # a long run (limit 300 s or more) gives up by itself once it will not end inside the limit less the model's
  # load, which leaves the rest of the call's time for what comes after; short runs are not worth the risk of
  # giving up on a rate measured while prompts were still being prefilled
  local -a deadline=()
  [ "$limit" -ge 300 ] && deadline=(--deadline-seconds $((limit - 30)))
  # shellcheck disable=SC2086
  timeout "$limit" "${LATHE[@]}" bench throughput --backend "${LATHE_PAIRS_BACKEND:-cuda}" \
      --model "${LATHE_PAIRS_MODEL:-synthetic:llama-3-8b}" --input-len "$in_len" --output-len "$out_len" --num-requests "$n" \
      "${deadline[@]}" \
      ${LATHE_PAIR_ARGS:-} --json "$OUT_DIR/throughput-$in_len-$out_len.json" >> "$log" 2>&1
}

device() {
  setup
  local out=$OUT_DIR
  { nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true; } 2>&1 | tee "$out/nvidia-smi.txt"
  set +e
  "$JAVA" "${JVM_FLAGS[@]}" -cp "$TEST_CP" dev.lathe.cuda.Doctor 2>&1 | tee "$out/doctor.txt"
  gpu_tests "${LATHE_TEST_LIMIT:-400}" "$out/gpu-tests.log" --reports-dir "$out/reports"
  local rc=$?
  cat "$out/gpu-tests.log"
  "$JAVA" "${JVM_FLAGS[@]}" -cp "$TEST_CP" dev.lathe.cuda.OpTimings 2>&1 | tee "$out/op-timings.txt"
  set -e
  if [ "${LATHE_SKIP_BENCH:-0}" != 1 ]; then bench "$out"; fi
  echo "gpu tests exit code: $rc (logs and JUnit XML in $out)"
  return "$rc"
}

# Latency benchmarks of issue 4 with the transformers peer measured in the same call.
bench() {
  local out=$1 card=$CARD
  if [ -f tools/peers/hf_latency.py ] && [ "${LATHE_SKIP_PEER:-0}" != 1 ]; then
    (cd tools/peers && timeout 300 python3 hf_latency.py --preset llama-3-8b --input-len 128 --output-len 128 \
        --ttft-input-len 2048 --modes eager,compile --json "$out/peer.json") 2>&1 | tail -20 | tee "$out/peer.log" || true
  fi
  "${LATHE[@]}" bench latency --backend cuda --model synthetic:llama-3-8b --batch 1 --input-len 128 --output-len 128 \
      --warmup 1 --iterations 3 --card "$card" --peer-json "$out/peer.json" --json "$out/latency-128-128.json" 2>&1 | tee "$out/bench.log"
  "${LATHE[@]}" bench latency --backend cuda --model synthetic:llama-3-8b --batch 1 --input-len 2048 --output-len 1 \
      --warmup "$TTFT_WARMUP" --iterations 5 --card "$card" --peer-json "$out/peer.json" --json "$out/latency-2048-1.json" 2>&1 | tee -a "$out/bench.log"
}

# Offline throughput of issue 5 (trtllm-bench method) with the transformers batch-64 peer of the same call.
throughput() {
  setup
  local out=$OUT_DIR n=${LATHE_THROUGHPUT_REQUESTS:-3000}
  set +e
  timeout 330 "${LATHE[@]}" bench throughput --backend cuda --model synthetic:llama-3-8b --input-len 128 --output-len 128 \
      --num-requests "$n" --json "$out/throughput-128-128.json" 2>&1 | tail -30 | tee "$out/throughput.log"
  peer_throughput "$out/throughput-128-128.json" 220 "$out/peer-throughput.log"
  tail -15 "$out/peer-throughput.log"
  set -e
}

# Moves the JSON records of $OUT_DIR into $OUT_DIR/records.tar.
bank() {
  local f
  for f in "$OUT_DIR"/*.json; do
    [ -f "$f" ] || continue
    tar -rf "$OUT_DIR/records.tar" -C "$OUT_DIR" -- "$(basename "$f")" && rm -f -- "$f"
  done
}

# Issue 4's latency records: the transformers peer first (LATHE_PEER_MODES, default eager and compile), then
# `lathe bench latency` at batch 1 for the 2048-token TTFT (LATHE_TTFT_WARMUP warm-ups, 10 timed) and 128/128 decode,
# each record carrying that peer; JSON records go into records.tar.
latency_records() {
  setup
  local out=$OUT_DIR
  local -a lat=(bench latency --backend cuda --model synthetic:llama-3-8b --batch 1 --card "$CARD")
  set +e
  rm -f /tmp/lathe-peer.json
  (cd tools/peers && timeout "${LATHE_PEER_LIMIT:-240}" python3 hf_latency.py --preset llama-3-8b --input-len 128 \
      --output-len 128 --ttft-input-len 2048 --modes "${LATHE_PEER_MODES:-eager,compile}" --json /tmp/lathe-peer.json) \
      >> "$out/bench.log" 2>&1
  [ -f /tmp/lathe-peer.json ] && lat+=(--peer-json /tmp/lathe-peer.json)
  # the GPU idle for LATHE_PEER_PAUSE seconds (default 30) after the peer's compile runs, so that both start from the
  # same clocks
  sleep "${LATHE_PEER_PAUSE:-30}"
  echo "== TTFT 2048" >> "$out/bench.log"
  timeout 90 "${LATHE[@]}" "${lat[@]}" --input-len 2048 --output-len 1 --warmup "$TTFT_WARMUP" --iterations 10 \
      --json "$out/latency-2048-1.json" >> "$out/bench.log" 2>&1
  echo "== batch-1 decode 128/128" >> "$out/bench.log"
  timeout 60 "${LATHE[@]}" "${lat[@]}" --input-len 128 --output-len 128 --warmup 1 --iterations 3 \
      --json "$out/latency-128-128.json" >> "$out/bench.log" 2>&1
  bank
  set -e
  grep -E "^(==|TTFT|TPOT|host)|peer|eager|compile" "$out/bench.log" | grep -v iteration
}

# One short call that checks and measures a change: GPU tests, then batch-1 latency with and without
# decode graphs, the 2048-token TTFT, batch-256 decode and 128/128 throughput runs of
# LATHE_THROUGHPUT_REQUESTS requests (default 1000), one per max-num-seqs in LATHE_CHECK_SEQS (default 256),
# the JVM flags of LATHE_CHECK_FLAGS each against those (batch 256 and the first 128/128 run), and the pairs of
# LATHE_CHECK_PAIRS, each stage under its own time limit. Logs are written as the stages go, so a stage cut short keeps what
# came before; each JSON record goes into records.tar as soon as it is written (a call brings back at most 8 files).
# The stage limits add up: with the defaults about 560 s, and each flag adds 120 s, each further max-num-seqs
# 60 s, each pair LATHE_PAIR_LIMIT and the peer 240 s, against the 600 s a call may run.
check() {
  setup
  local out=$OUT_DIR card=$CARD
  set +e
  gpu_tests "${LATHE_TEST_LIMIT:-200}" "$out/gpu-tests.log"
  timeout 120 "$JAVA" "${JVM_FLAGS[@]}" -cp "$TEST_CP" dev.lathe.cuda.OpTimings > "$out/op-timings.txt" 2>&1
  local -a lat=(bench latency --backend cuda --model synthetic:llama-3-8b --batch 1 --card "$card")
  if [ "${LATHE_CHECK_PEER:-0}" = 1 ] && [ -f tools/peers/hf_latency.py ]; then
    # the transformers peer of the batch-1 records, measured in this call; its numbers go into those records
    (cd tools/peers && timeout "${LATHE_PEER_LIMIT:-240}" python3 hf_latency.py --preset llama-3-8b --input-len 128 \
        --output-len 128 --ttft-input-len 2048 --modes eager,compile --json /tmp/lathe-peer.json) >> "$out/bench.log" 2>&1
    [ -f /tmp/lathe-peer.json ] && lat+=(--peer-json /tmp/lathe-peer.json)
  fi
  timeout 45 "${LATHE[@]}" "${lat[@]}" --input-len 128 --output-len 128 --warmup 1 --iterations 3 \
      --json "$out/latency-128-128.json" >> "$out/bench.log" 2>&1
  bank
  lathe_with -Dlathe.graphs=false
  timeout 45 "${LATHE_WITH[@]}" "${lat[@]}" --input-len 128 --output-len 128 --warmup 1 --iterations 3 >> "$out/bench.log" 2>&1
  timeout 60 "${LATHE[@]}" "${lat[@]}" --input-len 2048 --output-len 1 --warmup "$TTFT_WARMUP" --iterations 5 \
      --json "$out/latency-2048-1.json" >> "$out/bench.log" 2>&1
  bank
  timeout 60 "${LATHE[@]}" bench latency --backend cuda \
      --model synthetic:llama-3-8b --batch 256 --card "$card" --input-len 128 --output-len 128 --warmup 1 --iterations 2 \
      --json "$out/latency-b256-128-128.json" >> "$out/bench.log" 2>&1
  bank
  local seqs flag spec first_seqs
  for seqs in ${LATHE_CHECK_SEQS:-256}; do
    echo "== 128/128 x ${LATHE_THROUGHPUT_REQUESTS:-1000}, max-num-seqs $seqs" >> "$out/bench.log"
    timeout "${LATHE_THROUGHPUT_LIMIT:-60}" "${LATHE[@]}" bench throughput --backend cuda --model synthetic:llama-3-8b \
        --input-len 128 --output-len 128 --num-requests "${LATHE_THROUGHPUT_REQUESTS:-1000}" --max-num-seqs "$seqs" \
        --json "$out/throughput-128-128-seqs$seqs.json" >> "$out/bench.log" 2>&1
    bank
  done
  # each switch of LATHE_CHECK_FLAGS against the runs above, one at a time (not combined): batch-256 decode,
  # then 128/128 at the first max-num-seqs
  for flag in ${LATHE_CHECK_FLAGS:-}; do
    lathe_with "$flag"
    echo "== batch 256, 128/128 $flag" >> "$out/bench.log"
    timeout 60 "${LATHE_WITH[@]}" bench latency --backend cuda --model synthetic:llama-3-8b --batch 256 --card "$card" \
        --input-len 128 --output-len 128 --warmup 1 --iterations 2 >> "$out/bench.log" 2>&1
    read -r first_seqs _ <<< "${LATHE_CHECK_SEQS:-256}"
    echo "== 128/128 x ${LATHE_THROUGHPUT_REQUESTS:-1000}, max-num-seqs $first_seqs $flag" >> "$out/bench.log"
    timeout "${LATHE_THROUGHPUT_LIMIT:-60}" "${LATHE_WITH[@]}" bench throughput --backend cuda --model synthetic:llama-3-8b \
        --input-len 128 --output-len 128 --num-requests "${LATHE_THROUGHPUT_REQUESTS:-1000}" --max-num-seqs "$first_seqs" \
        >> "$out/bench.log" 2>&1
  done
  # and issue 5's other pairs (LATHE_CHECK_PAIRS, e.g. "2048/128:1000"), each under LATHE_PAIR_LIMIT seconds
  for spec in ${LATHE_CHECK_PAIRS:-}; do
    echo "== $spec" >> "$out/bench.log"
    throughput_pair "$spec" "${LATHE_PAIR_LIMIT:-150}" "$out/bench.log"
    bank
  done
  set -e
  grep -E "tests (successful|failed)|exit code" "$out/gpu-tests.log"
  grep -E "^(==|TTFT|TPOT|host)|output  |peak|KV blocks|engine host|device memory" "$out/bench.log"
}

# The defaults against other JVM flag sets in the same call (one log, ab.log). LATHE_AB_FLAGS lists the sets,
# space-separated, the flags of one set comma-separated (cp=JAR puts an earlier build of a module first on the
# class path); by default one set, the float32 activation path of
# session 4 (fused norms, 16-bit gate/up product and grouped-query flash off). For each: the 2048-token TTFT,
# 128/128 x LATHE_AB_REQUESTS (default 3000) at max-num-seqs LATHE_AB_SEQS (default 1024) and 2048/128 x 300
# (LATHE_AB_2048=0 leaves it out; LATHE_AB_128=0 leaves 128/128 out). About 2 minutes a set.
ab() {
  setup
  local log=$OUT_DIR/ab.log flag
  local -a base=(bench latency --backend cuda --model synthetic:llama-3-8b --card "$CARD")
  local -a sets=("" ${LATHE_AB_FLAGS:--Dlathe.norm.fused=false,-Dlathe.mlp.gate16=false,-Dlathe.flash.gqa=false})
  set +e
  for flag in "${sets[@]}"; do
    lathe_with "$flag"
    echo "== TTFT 2048 ${flag:-(defaults)}" >> "$log"
    timeout 60 "${LATHE_WITH[@]}" "${base[@]}" --batch 1 --input-len 2048 --output-len 1 --warmup "$TTFT_WARMUP" --iterations 5 >> "$log" 2>&1
    if [ "${LATHE_AB_128:-1}" = 1 ]; then
      echo "== 128/128 x ${LATHE_AB_REQUESTS:-3000}, max-num-seqs ${LATHE_AB_SEQS:-1024} ${flag:-(defaults)}" >> "$log"
      local -a record=()
      [ -z "$flag" ] && record=(--json "$OUT_DIR/throughput-128-128-ab-defaults.json")
      timeout 75 "${LATHE_WITH[@]}" bench throughput --backend cuda --model synthetic:llama-3-8b --input-len 128 --output-len 128 \
          --num-requests "${LATHE_AB_REQUESTS:-3000}" --max-num-seqs "${LATHE_AB_SEQS:-1024}" "${record[@]}" >> "$log" 2>&1
    fi
    [ "${LATHE_AB_2048:-1}" = 1 ] || continue
    echo "== 2048/128 x 300 ${flag:-(defaults)}" >> "$log"
    timeout 60 "${LATHE_WITH[@]}" bench throughput --backend cuda --model synthetic:llama-3-8b --input-len 2048 --output-len 128 \
        --num-requests 300 >> "$log" 2>&1
  done
  set -e
  grep -E "^(==|TTFT|TPOT|host)|output  |engine host" "$log"
}

# How the 2048-token TTFT depends on what runs between prefills: for the defaults and each set of JVM flags in
# LATHE_TTFT_SETS (space-separated, flags comma-separated, as for ab), `bench latency` at each output length of
# LATHE_TTFT_OUTPUTS (default "1 2": prefills back to back, or with a decode step between), LATHE_TTFT_WARMUP
# warm-ups and LATHE_TTFT_ITERATIONS timed prefills (default 20), every iteration logged (ttft.log).
ttft_grid() {
  setup
  local log=$OUT_DIR/ttft.log flag out
  set +e
  for flag in "" ${LATHE_TTFT_SETS:-}; do
    lathe_with "$flag"
    for out in ${LATHE_TTFT_OUTPUTS:-1 2}; do
      echo "== TTFT 2048, output $out ${flag:-(defaults)}" >> "$log"
      timeout 60 "${LATHE_WITH[@]}" bench latency --backend cuda --model synthetic:llama-3-8b --card "$CARD" --batch 1 \
          --input-len 2048 --output-len "$out" --warmup "$TTFT_WARMUP" --iterations "${LATHE_TTFT_ITERATIONS:-20}" >> "$log" 2>&1
    done
  done
  set -e
  grep -E "^(==|TTFT)" "$log"
}

# Where a step's device time goes: `bench latency --profile` times each op of one 2048-token prefill step and one
# decode step (decode graphs off, so that step's ops run one by one), for the defaults and then for each set of
# JVM flags in LATHE_PROFILE_FLAGS (space-separated sets, flags comma-separated, as for ab); LATHE_PROFILE_ITERATIONS
# timed TTFT iterations come first (default 3). LATHE_PROFILE_OUTPUT (default 2) sets the output length: with 1 the
# timed prefills run back to back, as in `latency` mode, and only the prefill step is profiled.
profile() {
  setup
  local log=$OUT_DIR/profile.log flag
  set +e
  for flag in "" ${LATHE_PROFILE_FLAGS:-}; do
    lathe_with "-Dlathe.graphs=false${flag:+,$flag}"
    echo "== profile ${flag:-(defaults)}" >> "$log"
    timeout 90 "${LATHE_WITH[@]}" bench latency --backend cuda --model synthetic:llama-3-8b --card "$CARD" --batch 1 \
        --input-len 2048 --output-len "${LATHE_PROFILE_OUTPUT:-2}" --warmup "$TTFT_WARMUP" --iterations "${LATHE_PROFILE_ITERATIONS:-3}" \
        --profile >> "$log" 2>&1
  done
  set -e
  grep -v "iteration" "$log"
}

# Hardware counters of the prefill kernels: Nsight Compute (clocks left alone) over one 2048-token TTFT run, for
# the kernels matching LATHE_NCU_KERNELS (a regular expression), skipping LATHE_NCU_SKIP launches and reporting the
# next LATHE_NCU_COUNT, with the sections of LATHE_NCU_SET (default "detailed"). LATHE_NCU_ARGS replaces the shape
# options of that `bench latency` run: for the decode kernels at long contexts, e.g.
# LATHE_NCU_KERNELS=split_attention LATHE_NCU_ARGS="--batch 64 --input-len 2048 --output-len 3" with
# LATHE_TEST_JVM_FLAGS=-Dlathe.graphs=false (the decode steps then launch their kernels one by one). LATHE_NCU_EXTRA
# adds options (e.g. "--print-details all --metrics smsp__pcsamp_warps_issue_stalled_barrier").
ncu_prefill() {
  setup
  local log=$OUT_DIR/ncu.txt
  set +e
  timeout "${LATHE_NCU_LIMIT:-240}" ncu --clock-control none --target-processes all \
      -k "regex:${LATHE_NCU_KERNELS:-flash_attention_gqa|rope_write_kv|rms_norm|silu_mul}" \
      --launch-skip "${LATHE_NCU_SKIP:-0}" --launch-count "${LATHE_NCU_COUNT:-8}" --set "${LATHE_NCU_SET:-detailed}" \
      --section WarpStateStats --section SchedulerStats ${LATHE_NCU_EXTRA:-} \
      "${LATHE[@]}" bench latency --backend cuda --model synthetic:llama-3-8b --card "$CARD" \
      ${LATHE_NCU_ARGS:---batch 1 --input-len 2048 --output-len 1} --warmup 0 --iterations 1 > "$log" 2>&1
  echo "ncu exit code: $?" >> "$log"
  set -e
  grep -E "^  [a-z_0-9]+.*\(|Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Block Limit|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|L1/TEX Hit|L2 Hit|Executed Ipc|[Ss]tall|exit code" "$log" | head -200
}

# Imports a raw Nsight Systems trace (QDSTRM) into a report beside it, with an importer found under /opt/nvidia and the
# libraries the pack brought (nsys-libs; an absolute path, as the importer runs in the trace's directory)
nsys_import() {
  local importer libs
  importer=$(ls /opt/nvidia/nsight-*/*/host/*/QdstrmImporter 2>/dev/null | head -1 || true)
  [ -n "$importer" ] || { echo "no QdstrmImporter under /opt/nvidia"; return 0; }
  libs="$(cd "$DEV/nsys-libs" && pwd)"
  LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}" ldd "$importer" | grep -i "not found"
  (cd "$(dirname "$1")" && LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}" "$importer" -i "$(basename "$1")")
}

# A timeline of TTFT runs: Nsight Systems (CUDA API and kernels, no CPU sampling) over one `bench latency` at 2048
# tokens with LATHE_TTFT_WARMUP warm-up prefills and LATHE_NSYS_ITERATIONS timed ones (default 3; LATHE_NSYS_ARGS
# replaces the shape options), then `nsys stats` of the GPU trace and the API calls into nsys.txt, and
# tools/trace_summary.py's per-step summary into nsys-summary.txt: what the device waits for between a step's start
# and its first kernel, and the host's gaps between launches.
nsys_ttft() {
  setup
  local log=$OUT_DIR/nsys.txt
  # not always on PATH: Nsight Compute ships an nsys of its own
  local nsys
  nsys=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys 2>/dev/null | head -1 || true)
  if [ -z "$nsys" ]; then
    echo "no nsys on this machine (PATH, /opt/nvidia)" | tee "$log"
    return 0
  fi
  set +e
  rm -f "$OUT_DIR/ttft.nsys-rep" "$OUT_DIR/ttft.qdstrm" "$OUT_DIR/ttft.sqlite"  # a report left from an earlier run is not this one's
  lathe_with "-Dlathe.graphs=false"
  timeout "${LATHE_NSYS_LIMIT:-240}" "$nsys" profile --trace=cuda --sample=none --cpuctxsw=none --force-overwrite=true \
      -o "$OUT_DIR/ttft" "${LATHE_WITH[@]}" bench latency --backend cuda --model synthetic:llama-3-8b --card "$CARD" \
      ${LATHE_NSYS_ARGS:---batch 1 --input-len 2048 --output-len 1} --warmup "$TTFT_WARMUP" --iterations "${LATHE_NSYS_ITERATIONS:-3}" > "$log" 2>&1
  echo "nsys exit code: $?" >> "$log"
  if [ ! -f "$OUT_DIR/ttft.nsys-rep" ] && [ -f "$OUT_DIR/ttft.qdstrm" ]; then
    # an nsys without a working importer beside it leaves the raw trace: import it with one found under /opt/nvidia,
    # given the libraries the pack brought (nsys-libs)
    nsys_import "$OUT_DIR/ttft.qdstrm" >> "$log" 2>&1
  fi
  "$nsys" stats --report cuda_api_sum --report cuda_gpu_kern_sum --format csv --output "$OUT_DIR/ttft" "$OUT_DIR/ttft.nsys-rep" >> "$log" 2>&1
  # the per-step summary (tools/trace_summary.py) from the report's SQLite export, which `nsys stats` leaves beside it
  [ -f "$OUT_DIR/ttft.sqlite" ] || "$nsys" export --type sqlite --output "$OUT_DIR/ttft.sqlite" "$OUT_DIR/ttft.nsys-rep" >> "$log" 2>&1
  python3 tools/trace_summary.py "$OUT_DIR/ttft.sqlite" > "$OUT_DIR/nsys-summary.txt" 2>> "$log"
  set -e
  rm -f "$OUT_DIR/ttft.sqlite"
  tail -20 "$log"
  cat "$OUT_DIR/nsys-summary.txt"
}

# issue 6's serving sweep: `lathe serve` on the GPU, `lathe bench serving` at concurrency 1 ... 256 with 1024
# input and 128 output tokens (LATHE_SERVING_PER_LEVEL prompts per request in flight at each level), then
# `lathe bench throughput` offline on the same lengths, once with as many sequences per step as the
# serving point of the 85% check (64) and once with the default 256. Needs a pack made with
# LATHE_PACK_SERVER=1.
serving() {
  setup
  local out=$OUT_DIR
  local model=${LATHE_SERVING_MODEL:-synthetic:llama-3-8b} backend=${LATHE_SERVING_BACKEND:-cuda}
  local in_len=${LATHE_SERVING_INPUT:-1024} out_len=${LATHE_SERVING_OUTPUT:-128}
  "${LATHE[@]}" serve "bench=$model" --backend "$backend" --max-model-len $((in_len + out_len)) --no-grpc --no-access-log \
      --max-waiting 4096 > "$out/serve.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 180); do
    curl -sf http://127.0.0.1:8000/health > /dev/null 2>&1 && break
    sleep 1
  done
  set +e
  timeout "${LATHE_SERVING_LIMIT:-300}" "${LATHE[@]}" bench serving --url http://127.0.0.1:8000 --model bench \
      --input-len "$in_len" --output-len "$out_len" \
      --prompts-per-concurrency "${LATHE_SERVING_PER_LEVEL:-4}" --concurrency "${LATHE_SERVING_CONCURRENCY:-1,2,4,8,16,32,64,128,256}" \
      --prompt-vocab "${LATHE_SERVING_VOCAB:-128000}" \
      --json "$out/serving-$in_len-$out_len.json" --chart "$out/serving-$in_len-$out_len.html" > "$out/serving.log" 2>&1
  kill "$server"
  wait "$server"
  local seqs
  for seqs in 64 256; do
    timeout "${LATHE_OFFLINE_LIMIT:-150}" "${LATHE[@]}" bench throughput --backend "$backend" --model "$model" \
        --input-len "$in_len" --output-len "$out_len" --num-requests $((seqs * ${LATHE_OFFLINE_ROUNDS:-4})) --max-num-seqs "$seqs" \
        --json "$out/throughput-$in_len-$out_len-seqs$seqs.json" >> "$out/throughput-$in_len-$out_len.log" 2>&1
  done
  set -e
  grep -vE "^(WARNING|\s*$)" "$out/serving.log" | tail -40
  grep -E "requests of|output  |TTFT ms|TPOT ms|peak" "$out/throughput-$in_len-$out_len.log"
}

# Issue 5's other length pairs, one or more per call ("128/2048:1000 2048/128:1000"), each under its own
# limit (LATHE_PAIR_LIMIT seconds, default 280); a record per pair lands in $OUT.
pairs() {
  setup
  local spec log
  set +e
  for spec in ${LATHE_PAIRS:-128/2048:1000 2048/128:1000 2048/2048:1000}; do
    log=${spec%%:*}
    log="$OUT_DIR/throughput-${log/\//-}.log"
    throughput_pair "$spec" "${LATHE_PAIR_LIMIT:-280}" "$log"
    echo "$spec: exit $?"
    tail -12 "$log"
  done
  set -e
}

# One pair (LATHE_POLICY_PAIR, default 2048/128:300) under the defaults, then under each set of `bench throughput`
# options in LATHE_POLICY_SETS (space-separated sets, options comma-separated, e.g.
# "--admission-watermark=0 --admission-watermark=0.05 --guarantee-no-evict"), LATHE_POLICY_LIMIT seconds each
# (default 120); records throughput-IN-OUT-policyN.json, N counting from 0 for the defaults; one log, policies.log.
policies() {
  setup
  local spec=${LATHE_POLICY_PAIR:-2048/128:300} set i=0 log=$OUT_DIR/policies.log name
  name=${spec%%:*}
  name=${name/\//-}
  set +e
  for set in "" ${LATHE_POLICY_SETS:-}; do
    echo "== $spec ${set:-(defaults)}" >> "$log"
    LATHE_PAIR_ARGS="${set//,/ }" throughput_pair "$spec" "${LATHE_POLICY_LIMIT:-120}" "$log"
    [ -f "$OUT_DIR/throughput-$name.json" ] && mv "$OUT_DIR/throughput-$name.json" "$OUT_DIR/throughput-$name-policy$i.json"
    i=$((i + 1))
  done
  set -e
  grep -E "^==|output  |KV blocks used|device memory" "$log"
}

# One call for issue 5's records after a change: the GPU tests (LATHE_TEST_LIMIT; LATHE_SKIP_TESTS=1 skips them),
# the 3000-request 128/128 record with the options of LATHE_RECORDS_ARGS and its transformers batch-64 peer, the
# same at LATHE_RECORDS_SEQS sequences per step when set, then the pairs of LATHE_PAIRS (default 2048/128:1000,
# options in LATHE_PAIR_ARGS); logs go to one bench.log.
records() {
  setup
  local out=$OUT_DIR spec
  set +e
  [ "${LATHE_SKIP_TESTS:-0}" = 1 ] || gpu_tests "${LATHE_TEST_LIMIT:-110}" "$out/gpu-tests.log"
  # the 128/128 record (engine options in LATHE_RECORDS_ARGS, e.g. "--max-num-seqs 1024") with its peer
  LATHE_PAIR_ARGS="${LATHE_RECORDS_ARGS:-}" throughput_pair 128/128:3000 90 "$out/bench.log"
  peer_throughput "$out/throughput-128-128.json" "${LATHE_PEER_LIMIT:-150}" "$out/bench.log"
  if [ -n "${LATHE_RECORDS_SEQS:-}" ]; then
    local seqs=$LATHE_RECORDS_SEQS
    timeout 90 "${LATHE[@]}" bench throughput --backend cuda --model synthetic:llama-3-8b --input-len 128 --output-len 128 \
        --num-requests 3000 --max-num-seqs "$seqs" --json "$out/throughput-128-128-seqs$seqs.json" >> "$out/bench.log" 2>&1
  fi
  for spec in ${LATHE_PAIRS:-2048/128:1000}; do throughput_pair "$spec" "${LATHE_PAIR_LIMIT:-120}" "$out/bench.log"; done
  set -e
  [ -f "$out/gpu-tests.log" ] && grep -E "tests (successful|failed)|exit code" "$out/gpu-tests.log"
  grep -E "requests of|output  |TTFT ms|TPOT ms|peak|KV blocks|engine host|compile" "$out/bench.log"
}

# The GPU tests alone, under LATHE_TEST_LIMIT seconds (default 300), with JUnit's XML reports; LATHE_TEST_ARGS adds
# console-launcher options (e.g. --include-classname '.*CudaEngineTest').
tests() {
  setup
  local out=$OUT_DIR rc
  set +e
  # shellcheck disable=SC2086
  gpu_tests "${LATHE_TEST_LIMIT:-300}" "$out/gpu-tests.log" --reports-dir "$out/reports" ${LATHE_TEST_ARGS:-}
  rc=$?
  set -e
  grep -E "✘|tests (successful|failed)|exit code" "$out/gpu-tests.log"
  return "$rc"
}

# A short call after a kernel change: the GPU tests but the two slowest (the Llama-shape flash test and
# the 8B CPU comparison), batch-1 decode latency with the fused gate/up + SiLU GEMV and without, and decode
# at batch 4 and 8 (LATHE_QUICK_BATCHES) with the gemv kernels taking up to 2 rows (the default) and up to 8.
quick() {
  setup
  local out=$OUT_DIR rows b
  set +e
  gpu_tests "${LATHE_TEST_LIMIT:-90}" "$out/gpu-tests.log" \
      --exclude-methodname '.*(flashAttentionMatchesDenseSoftmaxOnLlamaShapes|llama3_8bAgreesWithTheCpuBackend).*'
  local -a lat=(bench latency --backend cuda --model synthetic:llama-3-8b --card "$CARD" --input-len 128 --output-len 128)
  timeout 45 "${LATHE[@]}" "${lat[@]}" --batch 1 --warmup 1 --iterations 3 --json "$out/latency-128-128.json" >> "$out/bench.log" 2>&1
  echo "== batch 1, gate/up GEMV and SiLU-and-multiply as two kernels" >> "$out/bench.log"
  lathe_with -Dlathe.gemv.glu=false
  timeout 45 "${LATHE_WITH[@]}" "${lat[@]}" --batch 1 --warmup 1 --iterations 3 >> "$out/bench.log" 2>&1
  for b in ${LATHE_QUICK_BATCHES:-4 8}; do
    for rows in 2 8; do
      echo "== batch $b, gemv up to $rows rows" >> "$out/bench.log"
      lathe_with "-Dlathe.gemv.maxRows=$rows"
      timeout 40 "${LATHE_WITH[@]}" "${lat[@]}" --batch "$b" --warmup 1 --iterations 2 >> "$out/bench.log" 2>&1
    done
  done
  set -e
  grep -E "✘|tests (successful|failed)|exit code" "$out/gpu-tests.log"
  grep -E "^(==|TTFT|TPOT|host)" "$out/bench.log"
}

case "$mode" in
  ab) ab ;;
  ttft) ttft_grid ;;
  profile) profile ;;
  ncu) ncu_prefill ;;
  nsys) nsys_ttft ;;
  quick) quick ;;
  tests) tests ;;
  records) records ;;
  pairs) pairs ;;
  policies) policies ;;
  serving) serving ;;
  check) check ;;
  latency) latency_records ;;
  throughput) throughput ;;
  pack) pack ;;
  device) device ;;
  *) echo "usage: $0 [pack|device|throughput|check|latency|serving|pairs|policies|records|tests|quick|ab|ttft|profile|ncu|nsys]" >&2; exit 2 ;;
esac
