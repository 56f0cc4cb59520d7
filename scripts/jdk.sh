# Sourced by ./lathe and scripts/test: sets LATHE_JAVA_HOME to a JDK >= 25, or explains how to get one.
# Order: $JAVA_HOME, then every /usr/lib/jvm/* (newest first), then the java on PATH.

lathe_java_major() {
    # prints the feature version of the JDK at $1 (e.g. 25), or nothing
    local home="$1" v=""
    if [ -f "$home/release" ]; then
        v=$(sed -n 's/^JAVA_VERSION="\([0-9][0-9]*\).*/\1/p' "$home/release" | head -1)
    fi
    if [ -z "$v" ] && [ -x "$home/bin/java" ]; then
        v=$("$home/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -1)
    fi
    echo "$v"
}

lathe_find_jdk() {
    local candidates=() c m
    [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
    if [ -d /usr/lib/jvm ]; then
        while IFS= read -r c; do candidates+=("$c"); done < <(ls -d /usr/lib/jvm/*/ 2>/dev/null | sed 's:/$::' | sort -rV)
    fi
    if command -v java >/dev/null 2>&1; then
        candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
    fi
    for c in "${candidates[@]}"; do
        m=$(lathe_java_major "$c")
        if [ -n "$m" ] && [ "$m" -ge 25 ] && [ -x "$c/bin/java" ] && [ -x "$c/bin/javac" ]; then
            LATHE_JAVA_HOME="$c"
            return 0
        fi
    done
    {
        echo "lathe: no JDK 25 or newer found (looked at \$JAVA_HOME and /usr/lib/jvm/*; the java on PATH is $(java -version 2>&1 | head -1 || echo 'missing'))."
        echo "  Lathe needs Java 25 (java.lang.foreign and the Vector API). Install one, e.g.:"
        echo "    apt-get install temurin-25-jdk   (Adoptium's apt repository), or unpack a JDK 25 from https://adoptium.net"
        echo "  then run again, or point JAVA_HOME at it."
    } >&2
    return 1
}
