#!/usr/bin/env python3
"""Runs the README's walk-through against fresh servers and fails where an answer
differs from what the README shows.

The walk-through is the "### Walk-through" section of README.md. Each ```sh block
there follows an HTML comment that says which database it needs:
`<!-- walkthrough: demo -->` (seed-demo data) or `<!-- walkthrough: empty -->`.
In a block, the first line sets the shell variables; every `curl` command is
followed by a line `# → STATUS  FRAGMENT  FRAGMENT …`: the HTTP status, then text
the answer (headers included with `curl -i`) must contain, separated by two or
more spaces.

Usage: walkthrough.py BINARY README
"""

import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

EXPECTATION = re.compile(r"^#\s*→\s*(\d{3})(.*)$")


def blocks(readme):
    section = re.split(r"\n#{2,3} ", readme.split("### Walk-through", 1)[1], maxsplit=1)[0]
    for match in re.finditer(r"<!-- walkthrough: (\w+) -->\s*```sh\n(.*?)```", section, re.S):
        yield match.group(1), match.group(2).splitlines()


def steps(lines):
    """The preamble (first line) and (command, status, fragments) triples."""
    preamble, pending, found = lines[0], None, []
    for number, line in enumerate(lines[1:], start=2):
        line = line.strip()
        expected = EXPECTATION.match(line)
        if expected:
            if pending is None:
                raise SystemExit(f"line {number} of a walk-through block shows an answer without a command before it")
            fragments = [f for f in re.split(r"\s{2,}", expected.group(2).strip()) if f]
            found.append((pending, int(expected.group(1)), fragments))
            pending = None
        elif line.startswith("curl "):
            if pending is not None:
                raise SystemExit(f"the README shows no answer (# → …) for: {pending}")
            pending = line
    if pending is not None:
        raise SystemExit(f"the README shows no answer (# → …) for: {pending}")
    return preamble, found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, database, workdir, key, seed):
    env = dict(os.environ, DATABASE_URL=database, CUSTCLASS_ADMIN_KEY=key, RUST_LOG="warn")
    if seed:
        subprocess.run([binary, "seed-demo"], env=env, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    env["BIND_ADDR"] = f"127.0.0.1:{port}"
    log = open(os.path.join(workdir, f"server-{port}.log"), "w")
    server = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return server, port
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server did not start (log in {log.name})")
            time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def main():
    binary, readme_path = sys.argv[1], sys.argv[2]
    readme = open(readme_path, encoding="utf-8").read()
    found = list(blocks(readme))
    if not found:
        raise SystemExit("README.md has no walk-through blocks marked <!-- walkthrough: … -->")
    failures, commands = [], 0
    with tempfile.TemporaryDirectory() as workdir:
        for index, (kind, lines) in enumerate(found):
            key = "cck_walkthrough_" + secrets.token_hex(16)
            database = os.path.join(workdir, f"block{index}.db")
            server, port = start(binary, database, workdir, key, seed=(kind == "demo"))
            try:
                preamble, checks = steps(lines)
                preamble = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", preamble)
                # The status goes on a line of its own after the answer.
                shell = f'curl() {{ command curl -w "\\n%{{http_code}}" "$@"; }}\nexport CUSTCLASS_ADMIN_KEY={key}\n{preamble}\n'
                for command, status, fragments in checks:
                    commands += 1
                    run = subprocess.run(["bash", "-c", shell + command], capture_output=True, text=True)
                    output, _, got = run.stdout.rstrip("\n").rpartition("\n")
                    problems = []
                    if got != str(status):
                        problems.append(f"answered {got or run.stderr.strip()}, the README shows {status}")
                    problems += [f"the answer lacks {f}" for f in fragments if f not in output]
                    if problems:
                        failures.append(f"{command}\n    " + "\n    ".join(problems) + f"\n    answer: {output[:600]}")
            finally:
                server.terminate()
                server.wait()
    if failures:
        print(f"README walk-through: {len(failures)} of {commands} commands answer differently:\n", file=sys.stderr)
        print("\n\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"README walk-through: all {commands} commands answer as the README shows", file=sys.stderr)


if __name__ == "__main__":
    main()
