#!/usr/bin/env python3
"""Extracts the part of the official Proxmox VE API schema that Phoenix's driver uses, in one
normalized form for both versions, for the API test double's request checking.

Sources: the `apiSchema` array of Proxmox's API viewer (`apidoc.js`) for PVE 8.4.5
(sha256 of apidoc.js bbe03a42c55b3f9ae77a5b5216c1a8554f4fffd0f4b266848f4af26be295946e), and a
normalized snapshot of the same schema for PVE 9.2.3 (apidoc.js sha256
f2b77b57c71f3781a0993cc5062940ef31e0843fd9a6bcfdb4de4dd2001d6d9e).

Usage: extract.py PVE-8.4.5-APIDOC.json PVE-9.2.3-SNAPSHOT.json OUTDIR
Writes OUTDIR/pve-8.4.5.json and OUTDIR/pve-9.2.3.json.
"""
import json
import re
import sys

# The endpoints the driver uses (regular expressions over schema paths).
KEEP = [
    r"^/version$",
    r"^/cluster/resources$",
    r"^/cluster/status$",
    r"^/cluster/firewall/(options|rules|rules/\{pos\})$",
    r"^/access/permissions$",
    r"^/access/ticket$",
    r"^/nodes$",
    r"^/storage$",
    r"^/nodes/\{node\}/status$",
    r"^/nodes/\{node\}/network$",
    r"^/nodes/\{node\}/storage$",
    r"^/nodes/\{node\}/storage/\{storage\}/content$",
    r"^/nodes/\{node\}/aplinfo$",
    r"^/nodes/\{node\}/storage/\{storage\}/download-url$",
    r"^/nodes/\{node\}/tasks/\{upid\}/(status|log)$",
    r"^/nodes/\{node\}/tasks$",
    r"^/nodes/\{node\}/lxc(/.*)?$",
    r"^/nodes/\{node\}/qemu(/.*)?$",
]

FIELDS = ["type", "optional", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "format", "default_key", "items", "requires", "alias", "keyAlias"]


def keep(path):
    return any(re.search(k, path) for k in KEEP)


def flag(v):
    return v in (1, "1", True)


def norm_def(d):
    out = {}
    for k in FIELDS:
        src = {"minLength": "min_length", "maxLength": "max_length"}.get(k)
        v = d.get(k, d.get(src) if src else None)
        if v is None and src:
            v = d.get("extra", {}).get(k)
        if v is None or v == []:
            continue
        if k in ("optional", "default_key"):
            v = flag(v)
            if not v:
                continue
        elif k in ("minimum", "maximum", "minLength", "maxLength"):
            v = float(v)
        elif k == "format" and isinstance(v, dict):
            v = {name: norm_def(sub) for name, sub in sorted(v.items())}
        elif k == "items" and isinstance(v, dict):
            v = norm_def(v)
        out[k] = v
    return out


def from_tree(nodes, acc):
    for n in nodes:
        if keep(n.get("path", "")):
            for verb, m in sorted(n.get("info", {}).items()):
                params = m.get("parameters", {}).get("properties", {})
                acc.append({
                    "path": n["path"],
                    "method": verb,
                    "allowtoken": flag(m.get("allowtoken")),
                    "parameters": {name: norm_def(d) for name, d in sorted(params.items())},
                })
        from_tree(n.get("children", []), acc)


def from_snapshot(doc, acc):
    for p in doc["paths"]:
        if not keep(p["path"]):
            continue
        for m in sorted(p["methods"], key=lambda m: m["verb"]):
            acc.append({
                "path": p["path"],
                "method": m["verb"],
                "allowtoken": bool(m.get("allow_token")),
                "parameters": {prm["name"]: norm_def(prm["definition"]) for prm in sorted(m["parameters"], key=lambda x: x["name"])},
            })


def main():
    old, new, out = sys.argv[1:4]
    for version, loader, src in [("8.4.5", from_tree, json.load(open(old))), ("9.2.3", from_snapshot, json.load(open(new)))]:
        acc = []
        loader(src, acc)
        acc.sort(key=lambda e: (e["path"], e["method"]))
        with open(f"{out}/pve-{version}.json", "w") as f:
            json.dump({"version": version, "endpoints": acc}, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"pve-{version}: {len(acc)} endpoints")


if __name__ == "__main__":
    main()
