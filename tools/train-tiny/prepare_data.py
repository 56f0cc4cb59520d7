#!/usr/bin/env python3
"""Splits a verse-per-line King James Bible dump into training and validation text by chapter.

Input: the output of `bible -f Gen1:1-Rev22:21` (bible-kjv), one verse a line, each prefixed by its
reference, e.g. "Ge1:1 In the beginning God created the heaven and the earth.".

Output (UTF-8, in fact plain ASCII, "\\n" line ends):
  train.txt, valid.txt  one verse a line with the reference removed; a blank line between chapters,
                        so each file is "\\n\\n".join(chapter texts) + "\\n", where a chapter's text is
                        "\\n".join(its verses).
  split.json            counts and SHA-256 of both files.

Split rule: chapters are numbered 0..1188 in book order (Genesis 1 is 0, Revelation 22 is 1188);
chapter i goes to validation when i % 20 == 19, otherwise to training (59 validation chapters).
"""
import hashlib
import json
import re
import sys
from pathlib import Path

VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.+)$")
HOLDOUT_EVERY = 20
HOLDOUT_INDEX = 19


def read_chapters(dump: Path):
    chapters = []  # list of (reference "Ge1", [verse texts])
    for n, line in enumerate(dump.read_text(encoding="utf-8").splitlines(), 1):
        m = VERSE.match(line)
        if not m:
            raise SystemExit(f"{dump}:{n}: not a 'BookC:V text' verse line: {line[:80]!r}")
        book, chapter, verse, text = m.groups()
        ref = f"{book}{chapter}"
        if not chapters or chapters[-1][0] != ref:
            if int(verse) != 1:
                raise SystemExit(f"{dump}:{n}: chapter {ref} starts at verse {verse}, expected 1")
            chapters.append((ref, []))
        chapters[-1][1].append(" ".join(text.split()))  # the dump has a few double spaces
    return chapters


def write(path: Path, chapters) -> dict:
    text = "\n\n".join("\n".join(verses) for _, verses in chapters) + "\n"
    path.write_text(text, encoding="utf-8", newline="\n")
    data = text.encode("utf-8")
    return {"chapters": len(chapters), "verses": sum(len(v) for _, v in chapters), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: prepare_data.py KJV_VERSE_DUMP OUT_DIR")
    dump, out = Path(sys.argv[1]), Path(sys.argv[2])
    chapters = read_chapters(dump)
    if len(chapters) != 1189:
        raise SystemExit(f"{dump}: found {len(chapters)} chapters, the KJV has 1189; is the dump complete?")
    train = [c for i, c in enumerate(chapters) if i % HOLDOUT_EVERY != HOLDOUT_INDEX]
    valid = [c for i, c in enumerate(chapters) if i % HOLDOUT_EVERY == HOLDOUT_INDEX]
    out.mkdir(parents=True, exist_ok=True)
    info = {"rule": f"chapter index (0-based, book order) % {HOLDOUT_EVERY} == {HOLDOUT_INDEX} -> valid",
            "train": write(out / "train.txt", train), "valid": write(out / "valid.txt", valid),
            "valid_chapters": [ref for ref, _ in valid]}
    (out / "split.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: info[k] for k in ("train", "valid")}))


if __name__ == "__main__":
    main()
