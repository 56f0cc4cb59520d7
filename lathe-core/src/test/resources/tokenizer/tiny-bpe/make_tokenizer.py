#!/usr/bin/env python3
"""Writes tokenizer.json: a tiny byte-level BPE tokenizer in the Llama 3 layout.

Ids 0..255 are the 256 byte-level symbols (id == byte value), then the merged tokens in merge
order, then the added tokens. Some merges deliberately stop half way through a multi-byte UTF-8
character (the first two bytes of an emoji, of a CJK character) so that decoding one token alone
yields an incomplete character. The post-processor adds <|begin_of_text|> in front, as Llama 3's
does. Run it from this folder; the output is committed, this script documents how it was made.
"""
import json


def bytes_to_unicode():
    # GPT-2's reversible map from bytes to printable characters.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


B2U = bytes_to_unicode()


def sym(text):
    return "".join(B2U[b] for b in text.encode("utf-8"))


def byte_syms(raw):
    return [B2U[b] for b in raw]


# (left, right) pairs in rank order; each produces left+right.
merges = []


def merge(left, right):
    merges.append((left, right))


for a, b in [(" ", "t"), ("h", "e"), ("H", "e"), (" t", "he"), ("i", "n"), (" ", "a"), ("e", "r"), ("o", "n"),
             (" ", "w"), ("o", "r"), ("l", "l"), ("He", "ll"), ("Hell", "o"), (" w", "or"),
             ("l", "d"), (" wor", "ld"), ("\n", "\n"), ("i", "s"), (" ", "is"), (" a", "n"),
             ("in", "g")]:
    merge(sym(a), sym(b))

emoji = "😀".encode("utf-8")          # F0 9F 98 80
cjk = "中".encode("utf-8")            # E4 B8 AD
e_acute = "é".encode("utf-8")         # C3 A9
s = byte_syms
merge(s(emoji)[0], s(emoji)[1])        # first half of the emoji
merge(s(emoji)[2], s(emoji)[3])        # second half
merge(s(cjk)[0], s(cjk)[1])            # two of three bytes of 中
merge(s(e_acute)[0], s(e_acute)[1])    # é as one token

vocab = {B2U[b]: b for b in range(256)}
for left, right in merges:
    token = left + right
    if token not in vocab:
        vocab[token] = len(vocab)

specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
added = []
next_id = len(vocab)
for content in specials:
    added.append({"id": next_id, "content": content, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True})
    next_id += 1
# An added token that is not special: it survives skip_special_tokens.
added.append({"id": next_id, "content": "<tool>", "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": False})
bos_id = added[0]["id"]

tokenizer = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": added,
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True},
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos_id],
                                                 "tokens": ["<|begin_of_text|>"]}},
    },
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
              "ignore_merges": False, "vocab": vocab,
              "merges": [f"{left} {right}" for left, right in merges]},
}

with open("tokenizer.json", "w", encoding="utf-8") as f:
    json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    f.write("\n")
