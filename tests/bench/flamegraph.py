#!/usr/bin/python3
"""flamegraph.py — folded stacks ("root;caller;leaf COUNT" per line, as
stackcollapse-perf.pl writes them) to a flame graph SVG, for machines where
Brendan Gregg's FlameGraph scripts or inferno are not installed.

    flamegraph.py stacks.folded > flame.svg [--title TEXT]

Each frame is a box as wide as its share of the samples, callers below
callees; hovering a box shows its name, samples and share (SVG <title>).
"""
import argparse
import html
import sys
import zlib

WIDTH, ROW, FONT, MIN_W = 1200, 16, 11, 0.3


def fold(lines):
    """The tree of frames: {name: [count, children]}."""
    root = [0, {}]
    for line in lines:
        line = line.rstrip("\n")
        if not line or " " not in line:
            continue
        stack, count = line.rsplit(" ", 1)
        try:
            n = int(count)
        except ValueError:
            continue
        root[0] += n
        node = root
        for frame in stack.split(";"):
            child = node[1].setdefault(frame, [0, {}])
            child[0] += n
            node = child
    return root


def colour(name):
    h = zlib.crc32(name.encode())
    if "[k]" in name or name.endswith("_[k]"):
        return f"rgb({200 + h % 55},{100 + h % 60},{80 + h % 40})"
    return f"rgb({220 + h % 35},{110 + (h >> 8) % 110},{40 + (h >> 16) % 40})"


def depth(node):
    return 1 + max((depth(c) for c in node[1].values()), default=0)


def render(root, title, out):
    total = root[0] or 1
    rows = depth(root)
    height = (rows + 2) * ROW + 30
    scale = (WIDTH - 20) / total
    out.write(f'<?xml version="1.0" standalone="no"?>\n'
              f'<svg version="1.1" width="{WIDTH}" height="{height}" '
              f'xmlns="http://www.w3.org/2000/svg" font-family="monospace" '
              f'font-size="{FONT}">\n<rect width="100%" height="100%" fill="#f8f8f0"/>\n'
              f'<text x="{WIDTH // 2}" y="18" text-anchor="middle" font-size="14">'
              f'{html.escape(title)}</text>\n')

    def box(name, count, x, level):
        w = count * scale
        if w < MIN_W:
            return
        y = height - (level + 1) * ROW - 4
        label = f"{name} ({count} samples, {100.0 * count / total:.2f}%)"
        out.write(f'<g><title>{html.escape(label)}</title><rect x="{x:.1f}" y="{y}" '
                  f'width="{w:.1f}" height="{ROW - 1}" fill="{colour(name)}" rx="2"/>')
        chars = int(w / (FONT * 0.6))
        if chars >= 3:
            text = name if len(name) <= chars else name[:chars - 2] + ".."
            out.write(f'<text x="{x + 2:.1f}" y="{y + ROW - 4}">{html.escape(text)}</text>')
        out.write("</g>\n")

    def walk(node, x, level):
        for name, child in sorted(node[1].items()):
            box(name, child[0], x, level)
            walk(child, x, level + 1)
            x += child[0] * scale

    box("all", total, 10, 0)
    walk(root, 10, 1)
    out.write("</svg>\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folded")
    ap.add_argument("--title", default="flame graph")
    args = ap.parse_args()
    with open(args.folded) as f:
        render(fold(f), args.title, sys.stdout)


if __name__ == "__main__":
    main()
