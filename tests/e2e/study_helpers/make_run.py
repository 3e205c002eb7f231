#!/usr/bin/env python3
"""Writes a small run folder as `dpo generate` will: RUN/images/*.png (tiny
real PNGs, one colour each) and RUN/manifest.jsonl. Standard library only.

usage: make_run.py RUN MODEL [--prompts N] [--seeds N] [--skip PROMPT_ID:SEED]
                   [--prompt-text ID=TEXT] [--edit] [--size PIXELS]
"""
import argparse, hashlib, json, os, struct, zlib


def png(width, height, rgb):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("model")
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--skip", action="append", default=[])
    ap.add_argument("--prompt-text", action="append", default=[])
    ap.add_argument("--edit", action="store_true")
    ap.add_argument("--size", type=int, default=8)
    a = ap.parse_args()
    texts = dict(t.split("=", 1) for t in a.prompt_text)
    os.makedirs(os.path.join(a.run, "images"), exist_ok=True)
    model_shade = int(hashlib.sha256(a.model.encode()).hexdigest()[:2], 16)
    lines = []
    if a.edit:
        for p in range(a.prompts):
            with open(os.path.join(a.run, "images", f"source-{p}.png"), "wb") as f:
                f.write(png(a.size, a.size, (p * 40 % 256, 7, 7)))
    for p in range(a.prompts):
        pid = f"p{p:03d}"
        for s in range(a.seeds):
            if f"{pid}:{s}" in a.skip:
                continue
            name = f"images/{pid}-s{s}-0.png"
            data = png(a.size, a.size, (p * 40 % 256, s * 60 % 256, model_shade))
            with open(os.path.join(a.run, name), "wb") as f:
                f.write(data)
            settings = {"steps": 4, "guidance": 7.5}
            if a.edit:
                settings["source_image"] = f"images/source-{p}.png"
            lines.append({
                "prompt_set": "tiny", "prompt_id": pid,
                "prompt": texts.get(pid, f"a red square number {p}, with \"quotes\""),
                "category": "shapes", "seed": s, "image_index": 0, "file": name,
                "sha256": hashlib.sha256(data).hexdigest(), "model": a.model, "settings": settings})
    with open(os.path.join(a.run, "manifest.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
