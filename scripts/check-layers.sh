#!/usr/bin/env bash
# Checks that no file of a crate imports from a module listed above it in the
# crate's lib.rs `//!` layout paragraph (listed top floor first), so the
# layout paragraph is the dependency order and there is no import cycle.
#   bash scripts/check-layers.sh crates/core [crates/... ...]
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in "$@"; do
  python3 - "$crate" <<'PY' || status=1
import re, sys, pathlib
root = pathlib.Path(sys.argv[1]) / "src"
lib = (root / "lib.rs").read_text()
# Top floor first; "- `a`, `b`: ..." puts a and b on one floor.
order = [re.findall(r"`(\w+)`", b) for b in re.findall(r"^//! - ((?:`\w+`(?:, )?)+):", lib, re.M)]
rank = {m: i for i, floor in enumerate(order) for m in floor}
bad = []
for f in sorted(root.rglob("*.rs")):
    rel = f.relative_to(root)
    mod = rel.parts[0].removesuffix(".rs")
    if mod not in rank:
        continue
    text = f.read_text()
    # Test modules may reach anywhere.
    text = text.split("#[cfg(test)]")[0]
    # Doc links are not imports; a root re-export (`crate::Error`) is named
    # by the module that defines it.
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
    if re.search(r"\bcrate::[A-Z]", text):
        bad.append(f"{rel}: imports through a root re-export; name the module")
    for used in set(re.findall(r"\bcrate::(\w+)", text)):
        if used in rank and used != mod and rank[used] < rank[mod]:
            bad.append(f"{rel}: imports crate::{used}, which is above `{mod}` in the layout")
if bad:
    print("\n".join(bad)); sys.exit(1)
print(f"{sys.argv[1]}: {len(rank)} modules on {len(order)} floors, every import points down the layout")
PY
done
exit $status
