#!/usr/bin/env python3
"""Load generator of scripts/bench_serve.sh (standard library only): C concurrent clients send R
requests in all, each one clip (cycling through the list) judged on the given dimensions, to an
evalverse server (`/v1/score`) or the Python reference (`/score`, with the judge's questions).
One untimed warm-up request per clip first (its score-token soft scores can be dumped with --dump
to check that both servers computed the same thing). Prints requests/s, judgements/s and latency
percentiles; the last line is machine-readable (RESULT ...).

    python3 scripts/bench_serve.py --url http://127.0.0.1:8090 --kind evalverse --clips clips.json \
        --dimensions lens,pacing --concurrency 8 --requests 32
"""

import argparse
import json
import threading
import time
import urllib.request


def post(url, body, timeout=3600):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--kind", choices=["evalverse", "reference"], required=True)
    ap.add_argument("--clips", required=True, help="JSON list of {video, prompt, questions}")
    ap.add_argument("--dimensions", default="lens,pacing")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--dump", help="write each clip's score-token soft score per dimension (JSON)")
    args = ap.parse_args()
    clips = json.load(open(args.clips))
    dims = args.dimensions.split(",")

    def body(clip):
        if args.kind == "evalverse":
            return {"items": [{"video": clip["video"], "prompt": clip["prompt"], "dimensions": dims}]}
        return {"items": [{"video": clip["video"], "questions": {d: clip["questions"][d] for d in dims}}]}

    path = "/v1/score" if args.kind == "evalverse" else "/score"
    soft = {}
    for c in clips:
        r = post(args.url + path, body(c))
        if args.kind == "evalverse":
            # The VLM's expected score over the score tokens, before the head, fusion and gate.
            soft[c["video"]] = {j["dimension"]: j["token_soft"] for j in r["results"][0]["judgements"]}
        else:
            soft[c["video"]] = r["results"][0]
    if args.dump:
        json.dump(soft, open(args.dump, "w"))
    latencies, rewards, lock = [], [], threading.Lock()
    todo = list(range(args.requests))

    def client():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            t = time.perf_counter()
            r = post(args.url + path, body(clips[i % len(clips)]))
            with lock:
                latencies.append(time.perf_counter() - t)
                rewards.append(r["rewards"][0])

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
    judgements = args.requests * len(dims)
    failed = sum(1 for r in rewards if r is None)
    print(
        f"{args.kind}: {args.requests} requests x {len(dims)} dimensions, concurrency {args.concurrency}: "
        f"{wall:.2f} s, {args.requests / wall:.3f} req/s, {judgements / wall:.3f} judgements/s, "
        f"latency p50 {pct(0.5):.2f} s p95 {pct(0.95):.2f} s, {failed} failed"
    )
    print(f"RESULT kind={args.kind} seconds={wall:.4f} judgements_per_s={judgements / wall:.4f} "
          f"p50={pct(0.5):.4f} p95={pct(0.95):.4f} failed={failed}")


if __name__ == "__main__":
    main()
