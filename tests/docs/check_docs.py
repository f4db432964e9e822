#!/usr/bin/env python3
"""The docs check (ctest Docs.ReferencesResolve): python3 tests/docs/check_docs.py REPO_ROOT

Over README.md and docs/**/*.md (standard library only, well under a second):
- every relative link and image (Markdown `[..](..)`, `![..](..)`, reference definitions, HTML
  `src=`/`href=`) names an existing file or folder, and a `#anchor` into a Markdown file names one
  of its headings (GitHub's heading ids);
- docs/tutorial/figures/ holds only what scripts/make_tutorial_figures.sh wrote: every file there is
  listed in its MANIFEST.txt with the same sha256, every listed file exists, and every figure a doc
  references is listed (so a picture edited or added by hand fails);
- every repository path a doc names in inline code or in a link (src/..., include/..., tests/...,
  scripts/..., configs/..., bench/..., apps/..., datasets/..., docs/...) exists; `*` and `{a,b}`
  are expanded, `:LINE` suffixes dropped, and a stem names its files (`bench/train_bench` is
  bench/train_bench.cpp's program). A placeholder is written `tests/reference/<name>.py`.
Links and paths inside fenced code blocks are not checked (they show commands and their output).
Prints one `file:line: problem` per problem and exits 1 if there is any.
"""
import glob
import hashlib
import os
import re
import sys
import urllib.parse

FIGURES = "docs/tutorial/figures"
PATH_ROOTS = ("src", "include", "tests", "scripts", "configs", "bench", "apps", "datasets", "docs")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_REF = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")
HTML_ID = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")
# A repository path: starts at a word boundary that is not part of a longer path (build/tests/x is
# a build-tree path, not tests/x).
REPO_PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./*{},+-]*)" % "|".join(PATH_ROOTS))
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def markdown_files(root):
    files = ["README.md"] if os.path.isfile(os.path.join(root, "README.md")) else []
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "docs")):
        dirnames.sort()
        files += [os.path.relpath(os.path.join(dirpath, f), root) for f in sorted(filenames) if f.endswith(".md")]
    return files


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
            fence = None
        elif fence is None:
            yield number, line


def slug(heading):
    """GitHub's id for a heading: formatting dropped, lower case, punctuation removed, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors_of(path, cache={}):
    if path not in cache:
        ids, seen = set(), {}
        with open(path, encoding="utf-8") as f:
            for _, line in prose_lines(f.read()):
                m = HEADING.match(line)
                if m:
                    base = slug(m.group(2))
                    n = seen.get(base, 0)
                    seen[base] = n + 1
                    ids.add(base if n == 0 else f"{base}-{n}")
                ids.update(HTML_ID.findall(line))
        cache[path] = ids
    return cache[path]


def read_manifest(root, problems):
    """{path relative to the figures folder: sha256}, or None when there is no figures folder."""
    folder = os.path.join(root, FIGURES)
    manifest = os.path.join(folder, "MANIFEST.txt")
    if not os.path.isdir(folder):
        return None
    listed = {}
    if not os.path.isfile(manifest):
        problems.append(f"{FIGURES}/MANIFEST.txt: missing (scripts/make_tutorial_figures.sh writes it)")
        return listed
    with open(manifest, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            m = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line.rstrip("\n"))
            if not m:
                problems.append(f"{FIGURES}/MANIFEST.txt:{number}: not '<sha256>  <path>': {line.rstrip()!r}")
                continue
            listed[m.group(2)] = m.group(1)
    for rel, digest in sorted(listed.items()):
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            problems.append(f"{FIGURES}/MANIFEST.txt: lists {rel}, which does not exist")
        elif sha256(path) != digest:
            problems.append(f"{FIGURES}/{rel}: sha256 differs from MANIFEST.txt (edited by hand? rerun "
                            "scripts/make_tutorial_figures.sh)")
    for dirpath, _, filenames in os.walk(folder):
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
            if rel != "MANIFEST.txt" and rel not in listed:
                problems.append(f"{FIGURES}/{rel}: not in MANIFEST.txt (not written by scripts/make_tutorial_figures.sh)")
    return listed


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def expand_braces(pattern):
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [p for alt in m.group(1).split(",") for p in expand_braces(pattern[:m.start()] + alt + pattern[m.end():])]


def repo_path_exists(root, token):
    token = re.sub(r"(:\d+(-\d+)?|#L\d+(-L?\d+)?)$", "", token.rstrip(".,;:)"))
    for pattern in expand_braces(token):
        full = os.path.join(root, pattern)
        if any(c in pattern for c in "*?["):
            found = glob.glob(full)
        else:  # a program or module named by its stem (bench/train_bench, src/coco/json_reader) counts
            found = os.path.exists(full) or (not full.endswith("/") and glob.glob(glob.escape(full) + ".*"))
        if not found:
            return token, False
    return token, True


def check_file(root, rel, manifest, problems):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        text = f.read()
    here = os.path.dirname(rel)
    counts = [0, 0]
    for number, line in prose_lines(text):
        where = f"{rel}:{number}"
        spans = [m.group(2) for m in CODE_SPAN.finditer(line)]
        prose = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        targets = [m.group(1) for m in INLINE_LINK.finditer(prose)] + HTML_REF.findall(prose)
        m = REFERENCE_DEF.match(prose)
        if m:
            targets.append(m.group(1))
        for target in targets:
            counts[0] += 1
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue
            path_part, _, anchor = urllib.parse.unquote(target).partition("#")
            if path_part.startswith("/"):
                resolved = os.path.normpath(path_part.lstrip("/"))
            elif path_part:
                resolved = os.path.normpath(os.path.join(here, path_part))
            else:
                resolved = rel
            if resolved.startswith(".."):
                problems.append(f"{where}: link {target} leaves the repository")
                continue
            full = os.path.join(root, resolved)
            if not os.path.exists(full):
                problems.append(f"{where}: link {target} -> {resolved}: no such file")
                continue
            if anchor and resolved.endswith(".md") and os.path.isfile(full) and anchor not in anchors_of(full):
                problems.append(f"{where}: link {target}: {resolved} has no heading with id #{anchor}")
            figures_rel = os.path.relpath(resolved, FIGURES).replace(os.sep, "/")
            if (manifest is not None and not figures_rel.startswith("..") and figures_rel != "MANIFEST.txt"
                    and os.path.isfile(full)):
                if figures_rel not in manifest:
                    problems.append(f"{where}: {resolved} is not in {FIGURES}/MANIFEST.txt (not produced by "
                                    "scripts/make_tutorial_figures.sh)")
        for chunk in spans + targets:
            for token in REPO_PATH.findall(chunk):
                counts[1] += 1
                token, ok = repo_path_exists(root, token)
                if not ok:
                    problems.append(f"{where}: names {token}, which does not exist")
    return counts


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check_docs.py REPO_ROOT")
    root = sys.argv[1]
    problems = []
    manifest = read_manifest(root, problems)
    files = markdown_files(root)
    links = paths = 0
    for rel in files:
        n_links, n_paths = check_file(root, rel, manifest, problems)
        links, paths = links + n_links, paths + n_paths
    for p in problems:
        print(p)
    print(f"check_docs: {len(files)} Markdown files, {links} links, {paths} repository paths, "
          f"{len(manifest or {})} figures in MANIFEST.txt: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
