"""Fails when a relative link of README.md or docs/ names a file that does not exist,
or a heading its file does not have (anchors as GitHub makes them).

Usage: check_links.py (from the repository's root)
"""
import glob
import os
import re
import sys


def slug(heading):
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path):
    found, fenced = set(), False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"^#{1,6} ", line):
            found.add(slug(line.lstrip("#")))
    return found


def main():
    pages = ["README.md"] + sorted(glob.glob("docs/**/*.md", recursive=True))
    anchors = {os.path.normpath(page): headings(page) for page in pages}
    broken = []
    for page in pages:
        text = open(page, encoding="utf-8").read()
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else os.path.normpath(page)
            if not os.path.exists(target):
                broken.append(f"{page}: {link} names no file")
            elif anchor and target in anchors and anchor not in anchors[target]:
                broken.append(f"{page}: {link} names no heading of {target}")
    if broken:
        print("broken links in the documentation:\n  " + "\n  ".join(broken), file=sys.stderr)
        sys.exit(1)
    print(f"documentation links: all links of {len(pages)} pages resolve", file=sys.stderr)


main()
