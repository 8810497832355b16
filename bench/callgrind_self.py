#!/usr/bin/env python3
"""The functions with the most self instructions (Ir) in a callgrind.out file, for bench/callgrind.sh.

  callgrind_self.py CALLGRIND_OUT [TOP]

Read from the file itself rather than from callgrind_annotate: on a dump taken while the
program runs (callgrind_control -d), callgrind_annotate 3.19 lists the frames still on the
stack (tokio's block_on, start_thread, main) at 100% self, even with --inclusive=no, and
hides the functions that did the work. Self cost here is every cost line of a function that
is not the inclusive cost of a call (the line after `calls=`); inlined files (fi=/fe=) count
to the function they were inlined into. Prints the total, then "Ir (share) function" lines.
"""
import collections
import re
import sys


def self_costs(path):
    names, cost = {}, collections.Counter()
    npos, cur, after_call, total = 1, None, False, None

    def name(spec):
        # Name compression: "(id) name" defines id, "(id)" refers to it.
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", spec)
        if not m:
            return spec
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), f"({m.group(1)})")

    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if after_call:
                    after_call = False
                elif cur is not None:
                    parts = line.split()
                    if len(parts) > npos:
                        cost[cur] += int(parts[npos])
            elif line.startswith("fn="):
                cur, after_call = name(line[3:].strip()), False
            elif line.startswith("cfn="):
                name(line[4:].strip())
            elif line.startswith("calls="):
                after_call = True
            elif line.startswith("positions:"):
                npos = len(line.split()[1:])
            elif line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    return cost, total


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) == 3 else 30
    cost, total = self_costs(sys.argv[1])
    whole = total or sum(cost.values()) or 1
    print(f"{whole:,} instructions in the dump; self instructions of the top {top} functions:")
    for fn, ir in cost.most_common(top):
        print(f"{ir:>14,} ({100.0 * ir / whole:5.2f}%)  {fn}")


if __name__ == "__main__":
    main()
