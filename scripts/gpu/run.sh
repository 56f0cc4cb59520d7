#!/usr/bin/env bash
# GPU tests of the CUDA backend, packed here and run on a GPU machine that has no Java.
#
#   scripts/gpu/run.sh [pack]   on a build machine (JDK 25, Maven, nvcc): builds lathe-core, lathe-cpu (if
#                               present) and lathe-cuda, makes a portable Java runtime, and puts runtime, jars,
#                               test classes and this script into .device/ at the root of the main checkout.
#   bash .device/run.sh device  on the GPU machine, from the repository root: unpacks the runtime, prints the
#                               doctor report, runs every @Tag("gpu") test, then first op timings; logs and JUnit XML go to $OUT
#                               (or ./gpu-out). Extra JVM flags: LATHE_TEST_JVM_FLAGS (e.g. -Dlathe.test.seed=42).
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
  if [ ! -f "$dest/jre.tar.xz" ] || [ "${LATHE_REBUILD_JRE:-0}" = 1 ]; then
    local jre_tool=${LATHE_DEVICE_JRE_TOOL:-/work/shared/tools/device-jre.sh}
    "$jre_tool" "$dest"
  fi
  cp "$src/scripts/gpu/run.sh" "$dest/run.sh"
  echo "packed into $dest: $(du -sh "$dest" | cut -f1) ($(ls "$dest/lib" | wc -l) jars)"
  du -sh "$dest"/* | sed 's/^/  /'
}

device() {
  local dev=.device out=${OUT:-$PWD/gpu-out}
  [ -f "$dev/jre.tar.xz" ] || { echo "no $dev/jre.tar.xz: run scripts/gpu/run.sh pack on the build machine first" >&2; exit 1; }
  mkdir -p "$out" /tmp/lathe-jre
  tar -C /tmp/lathe-jre -xJf "$dev/jre.tar.xz"
  local java=/tmp/lathe-jre/jre/bin/java cp=""
  for j in "$dev"/lib/*.jar; do
    case "$j" in *junit-platform-console-standalone*) ;; *) cp="$cp:$j" ;; esac
  done
  cp="$dev/test-classes${cp}"
  local flags="--enable-native-access=ALL-UNNAMED --add-modules jdk.incubator.vector -Xss4m ${LATHE_TEST_JVM_FLAGS:-}"
  { nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv || true; } 2>&1 | tee "$out/nvidia-smi.txt"
  set +e
  # shellcheck disable=SC2086
  "$java" $flags -cp "$cp" dev.lathe.cuda.Doctor 2>&1 | tee "$out/doctor.txt"
  # shellcheck disable=SC2086
  "$java" $flags -jar "$dev"/lib/junit-platform-console-standalone-*.jar execute \
      --class-path "$cp" --scan-class-path "$dev/test-classes" --include-tag gpu \
      --details=tree --disable-banner --disable-ansi-colors --reports-dir "$out/reports" 2>&1 | tee "$out/gpu-tests.log"
  local rc=${PIPESTATUS[0]}
  # shellcheck disable=SC2086
  "$java" $flags -cp "$cp" dev.lathe.cuda.OpTimings 2>&1 | tee "$out/op-timings.txt"
  set -e
  echo "gpu tests exit code: $rc (logs and JUnit XML in $out)"
  return "$rc"
}

case "$mode" in
  pack) pack ;;
  device) device ;;
  *) echo "usage: $0 [pack|device]" >&2; exit 2 ;;
esac
