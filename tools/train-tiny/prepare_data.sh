#!/usr/bin/env bash
# Builds train.txt / valid.txt for the kjv-tiny model from Debian's King James Bible packages.
#
#   tools/train-tiny/prepare_data.sh [OUT_DIR]      (default: .train-data in the repository root)
#
# Needs apt-get (Debian or a derivative; the `bible` reader is fetched for the machine's architecture),
# dpkg and python3. Nothing is installed system-wide: the packages are unpacked under OUT_DIR/pkg.
# bible-kjv-text holds the text in the compressed format of the Bible Retrieval System; bible-kjv's
# `bible` program decompresses it. `bible -f` (pretty-printing off) prints one verse a line, prefixed
# by its reference ("Ge1:1 In the beginning ..."); prepare_data.py splits that dump by chapter.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$root/.train-data}"
mkdir -p "$out/deb" "$out/pkg"

# Debian bookworm ships version 4.38 of both packages; the text itself has not changed in decades.
(cd "$out/deb" && apt-get download bible-kjv-text bible-kjv)
for deb in "$out"/deb/*.deb; do dpkg -x "$deb" "$out/pkg"; done

"$out/pkg/usr/bin/bible" -f -p "$out/pkg/usr/lib" Gen1:1-Rev22:21 > "$out/kjv-verses.txt"
python3 "$here/prepare_data.py" "$out/kjv-verses.txt" "$out"
