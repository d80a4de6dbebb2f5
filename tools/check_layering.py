#!/usr/bin/python3
"""Checks that #include directions follow the layering of src/ (CONTRIBUTING.md, docs/ARCHITECTURE.md).

Every `#include "..."` (and `#include <layer/...>` naming a file under src/) in src/**/*.{h,cpp} and apps/** is
resolved the way the compiler resolves it (the including file's folder first, then src/, the only project include
folder) and the layer of the including file must be allowed to include the layer of the included one by the
table below. Also fails on a quoted include that names no file (a typo), on a src/ file including anything under
apps/ or outside src/, on a cycle in the table, and on a CMakeLists.txt link dependency that contradicts the table
(a layer including another must link its library; no library may link one of a layer above it).

    /usr/bin/python3 tools/check_layering.py [--root DIR] [--graph]

Standard library only. Exit 0 with one summary line, 1 listing every violation, 2 on bad usage.
"""

import argparse
import os
import re
import sys

# The allowed include graph: layer -> the layers its files may include directly (a layer may always include
# itself). It is exactly the graph the code has, and it is acyclic; the intended order is
#   core <- io <- model/text <- train/infer <- serve/paper/dist <- apps, with report beside on core.
# Direct includes only: an edge implied through another layer (serve -> model through infer) must still be
# listed; add it here, with its reason, in the change that first needs it.
ALLOWED = {
    "core": [],  # the base (buffers, BLAS, block quantization, ops, threads, profiler): depends on no layer
    "io": ["core"],  # file formats (safetensors, GGUF) over core's buffers, quant types and errors
    "text": ["core", "io"],  # tokenizers, chat templates, corpora; gguf_vocab reads/writes GGUF metadata via io
    "model": ["core", "io"],  # config, tensors, forward/backward over core ops; checkpoints and GGUF via io
    "train": ["core", "io", "model", "text"],  # trains the model; checkpoints via io; corpora and SFT via text
    "infer": ["core", "io", "model", "text"],  # runs the model on mapped GGUF (io); detokenizes output (text)
    "serve": ["core", "infer", "text"],  # the engine loop over infer sessions; chat templates and tokens (text)
    "dist": ["core", "model"],  # MPI implementations of the interfaces in model/parallel.h; nothing above model
    "report": ["core"],  # gnuplot figures of a run's telemetry files: knows no model, only core's errors
    "paper": ["core", "model", "report", "text", "train"],  # the paper's ablations and analyses: trains, plots
    "apps": ["core", "dist", "infer", "io", "model", "paper", "report", "serve", "text", "train"],  # the CLI
}

SOURCE_EXTENSIONS = (".h", ".hpp", ".cpp", ".cc")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def find_cycle(table):
    """Returns a list of layers forming a cycle in `table` (first == last), or None."""
    state = {}  # layer -> 1 while on the DFS stack, 2 when done
    stack = []

    def visit(layer):
        state[layer] = 1
        stack.append(layer)
        for dep in table.get(layer, []):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[layer] = 2
        return None

    for layer in sorted(table):
        if layer not in state:
            cycle = visit(layer)
            if cycle:
                return cycle
    return None


def reachable(table, start):
    """The layers reachable from `start` through one or more edges of `table`."""
    seen, todo = set(), list(table.get(start, []))
    while todo:
        layer = todo.pop()
        if layer not in seen:
            seen.add(layer)
            todo.extend(table.get(layer, []))
    return seen


def check_table(table):
    """Errors in the table itself: unknown layers, self edges, cycles."""
    errors = []
    for layer, deps in table.items():
        for dep in deps:
            if dep not in table:
                errors.append(f"table: layer {layer} lists unknown layer {dep}")
            elif dep == layer:
                errors.append(f"table: layer {layer} lists itself (a layer may always include itself)")
    cycle = find_cycle({k: [d for d in v if d != k] for k, v in table.items()})
    if cycle:
        errors.append("table: the allowed graph has a cycle: " + " -> ".join(cycle))
    return errors


def source_files(root):
    """Every C++ source under src/ and apps/, as paths relative to root, sorted."""
    files = []
    for top in ("src", "apps"):
        for folder, dirs, names in os.walk(os.path.join(root, top)):
            dirs.sort()
            for name in sorted(names):
                if name.endswith(SOURCE_EXTENSIONS):
                    files.append(os.path.relpath(os.path.join(folder, name), root))
    return files


def layer_of(rel):
    """The layer of a path relative to the root: src/<layer>/..., apps/... -> "apps", else None."""
    parts = rel.split(os.sep)
    if parts[0] == "apps":
        return "apps"
    if parts[0] == "src" and len(parts) >= 3:
        return parts[1]
    return None


def resolve(root, rel_file, name, quoted):
    """The included file as a path relative to root, or None when it names no project file."""
    candidates = []
    if quoted:
        candidates.append(os.path.join(os.path.dirname(rel_file), name))
    candidates.append(os.path.join("src", name))
    for cand in candidates:
        cand = os.path.normpath(cand)
        if not cand.startswith(".." + os.sep) and os.path.isfile(os.path.join(root, cand)):
            return cand
    return None


def scan(root):
    """Returns (files, includes) where includes are (file, line, layer, target path or None, written name)."""
    files = source_files(root)
    includes = []
    for rel in files:
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                quoted, name = m.group(1) == '"', m.group(2).strip()
                target = resolve(root, rel, name, quoted)
                if not quoted and target is None:
                    continue  # a system or third-party header in <>
                includes.append((rel, lineno, layer_of(rel), target, name))
    return files, includes


def parse_cmake_links(root):
    """The dsmoe library graph of CMakeLists.txt as layer -> set of layers, or None when there is no such file.

    dsmoe_<layer> is the library of src/<layer>, the `dsmoe` executable is apps; other targets are ignored."""
    path = os.path.join(root, "CMakeLists.txt")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        text = "\n".join(line.split("#", 1)[0] for line in f)

    def layer(target):
        if target == "dsmoe":
            return "apps"
        return target[len("dsmoe_"):] if target.startswith("dsmoe_") else None

    graph = {}
    for m in re.finditer(r"\badd_(?:library|executable)\s*\(\s*([\w.-]+)", text):
        if layer(m.group(1)):
            graph.setdefault(layer(m.group(1)), set())
    for m in re.finditer(r"\btarget_link_libraries\s*\(([^)]*)\)", text, re.S):
        tokens = m.group(1).split()
        if not tokens or not layer(tokens[0]):
            continue
        deps = {layer(t) for t in tokens[1:] if layer(t)}
        graph.setdefault(layer(tokens[0]), set()).update(deps)
    return graph


def format_graph(graph, counts=None):
    lines = []
    for layer in sorted(graph, key=lambda l: (l == "apps", l)):
        deps = sorted(graph[layer])
        if counts:
            shown = [f"{d}({counts[(layer, d)]})" for d in deps]
        else:
            shown = deps
        lines.append(f"  {layer:<7} -> {', '.join(shown) if shown else '(none)'}")
    return "\n".join(lines)


def main():
    default_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=default_root, help="repository root (default: %(default)s)")
    parser.add_argument("--graph", action="store_true", help="print the include, link and allowed graphs")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    if not os.path.isdir(os.path.join(root, "src")):
        print(f"error: {root} has no src/ folder (pass the repository root with --root)", file=sys.stderr)
        return 2

    errors = check_table(ALLOWED)
    files, includes = scan(root)

    for rel in files:
        layer = layer_of(rel)
        if layer is None:
            errors.append(f"{rel}: a source file directly under src/ belongs to no layer (move it into a folder)")
        elif layer not in ALLOWED:
            errors.append(f"{rel}: layer {layer} (src/{layer}/) is not in the table at the top of "
                          f"tools/check_layering.py; add it with the layers it may include")

    include_graph = {layer: set() for layer in ALLOWED}
    counts = {}
    for rel, lineno, layer, target, name in includes:
        where = f"{rel}:{lineno}"
        if target is None:
            errors.append(f'{where}: include "{name}" names no file (looked beside the file and under src/)')
            continue
        to = layer_of(target)
        if to is None:
            errors.append(f'{where}: include "{name}" is {target}, outside src/ and apps/')
            continue
        if layer != "apps" and to == "apps":
            errors.append(f'{where}: layer {layer} may not include apps/ files ("{name}" is {target})')
            continue
        if layer not in ALLOWED or to not in ALLOWED:
            continue  # reported above as an unknown layer
        if to != layer:
            include_graph[layer].add(to)
            counts[(layer, to)] = counts.get((layer, to), 0) + 1
            if to not in ALLOWED[layer]:
                allowed = ", ".join(ALLOWED[layer]) or "none"
                errors.append(f"{where}: layer {layer} may not include layer {to} "
                              f'("{name}"; allowed: {allowed})')

    links = parse_cmake_links(root)
    if links is not None:
        for layer in sorted(ALLOWED):
            if layer not in links:
                errors.append(f"CMakeLists.txt: layer {layer} has no target "
                              f"{'dsmoe' if layer == 'apps' else 'dsmoe_' + layer}")
        for layer in sorted(links):
            if layer not in ALLOWED:
                errors.append(f"CMakeLists.txt: target of layer {layer} is not in the table")
                continue
            closure = reachable(ALLOWED, layer)
            for dep in sorted(links[layer]):
                if dep != layer and dep not in closure:
                    errors.append(f"CMakeLists.txt: {layer} links {dep}, against the layering "
                                  f"({layer} may include: {', '.join(ALLOWED[layer]) or 'none'})")
        link_graph = {k: sorted(v) for k, v in links.items()}
        for layer in sorted(ALLOWED):
            if layer not in links:
                continue
            linked = reachable(link_graph, layer)
            for dep in ALLOWED[layer]:
                if dep in links and dep not in linked:
                    errors.append(f"CMakeLists.txt: layer {layer} may include {dep} but its target does not "
                                  f"link {dep}'s library, directly or through another")

    if args.graph:
        print("include graph (src/, apps/; layer -> layers it includes, with the number of includes):")
        print(format_graph(include_graph, counts))
        if links is not None:
            print("link graph (CMakeLists.txt target_link_libraries between dsmoe targets; apps = dsmoe):")
            print(format_graph(links))
        print("allowed graph (the table in tools/check_layering.py):")
        print(format_graph(ALLOWED))
        unused = [f"{k} -> {d}" for k in sorted(ALLOWED) for d in ALLOWED[k] if d not in include_graph.get(k, ())]
        print("allowed but unused: " + (", ".join(unused) if unused else "(none)"))

    if errors:
        for e in errors:
            print(e)
        print(f"layering: {len(files)} files, {len(includes)} includes, {len(errors)} violation(s)", file=sys.stderr)
        return 1
    print(f"layering: {len(files)} files, {len(includes)} includes, OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
