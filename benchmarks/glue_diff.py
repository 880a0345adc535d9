"""Every number the chapters quote and every table they show, at two commits: what differs.

usage: .venv/bin/python benchmarks/glue_diff.py OLD_COMMIT [NEW_COMMIT]   (default: the working tree)
Run from the repository root. It imports nothing of helpers: it reads the committed notebooks.
Reads chapters/*.ipynb: the glue records (name -> value), the values of the prose's {eval}
expressions (user_expressions), and every text/html, text/markdown and text/plain output of
cells that are not nbval-ignore-output.
"""
import json, subprocess, sys
from pathlib import Path

def notebooks(commit):
    if commit is None:
        return {p.name: json.loads(p.read_text()) for p in sorted(Path("chapters").glob("*.ipynb"))}
    names = subprocess.run(["git", "ls-tree", "--name-only", commit, "chapters/"], capture_output=True, text=True).stdout.split()
    return {Path(n).name: json.loads(subprocess.run(["git", "show", f"{commit}:{n}"], capture_output=True, text=True).stdout)
            for n in names if n.endswith(".ipynb")}

def values(nb):
    glue, exprs, outputs = {}, [], []
    for cell in nb["cells"]:
        for ue in cell.get("metadata", {}).get("user_expressions", []) or []:
            exprs.append((ue.get("expression"), json.dumps(ue.get("result", {}).get("data", {}), sort_keys=True)))
        if cell["cell_type"] != "code":
            continue
        ignore = "nbval-ignore-output" in cell.get("metadata", {}).get("tags", []) or "nbval-ignore-output" in "".join(cell["source"])
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                glue[name] = json.dumps(o["data"], sort_keys=True)
            elif not ignore and o.get("output_type") in ("display_data", "execute_result"):
                d = o.get("data", {})
                outputs.append(json.dumps({k: v for k, v in d.items() if k in ("text/html", "text/markdown", "text/plain")}, sort_keys=True))
    return glue, exprs, outputs

old = notebooks(sys.argv[1]); new = notebooks(sys.argv[2] if len(sys.argv) > 2 else None)
total = {"glue": 0, "expressions": 0, "outputs": 0}; diffs = {"glue": 0, "expressions": 0, "outputs": 0}
for name in sorted(set(old) | set(new)):
    if name not in old or name not in new:
        print("only in one:", name); continue
    (g1, e1, o1), (g2, e2, o2) = values(old[name]), values(new[name])
    total["glue"] += len(g1); total["expressions"] += len(e1); total["outputs"] += len(o1)
    for k in sorted(set(g1) | set(g2)):
        if g1.get(k) != g2.get(k):
            diffs["glue"] += 1; print(f"{name}: glue {k}: {g1.get(k)} -> {g2.get(k)}"[:300])
    if e1 != e2:
        import difflib
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=e1, b=e2, autojunk=False).get_opcodes():
            if tag != "equal":
                diffs["expressions"] += max(i2 - i1, j2 - j1)
                print(f"{name}: expressions {tag}: {e1[i1:i2]} -> {e2[j1:j2]}"[:400])
    if o1 != o2:
        d = [(i, a, b) for i, (a, b) in enumerate(zip(o1, o2)) if a != b] + ([("count", len(o1), len(o2))] if len(o1) != len(o2) else [])
        diffs["outputs"] += len(d)
        for i, a, b in d[:5]: print(f"{name}: output {i} differs: {str(a)[:150]} -> {str(b)[:150]}")
print("compared:", total, "differing:", diffs)
