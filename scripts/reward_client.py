#!/usr/bin/env python3
"""A reward function for a video generator's RL loop (Flow-GRPO / DanceGRPO style) that calls
`evalverse serve`. Standard library only.

    from reward_client import EvalverseReward
    reward_fn = EvalverseReward("http://127.0.0.1:8080", dimensions=["lens", "lighting"])
    rewards, info = reward_fn(videos, prompts)   # videos: paths under the server's media root,
                                                 # or bytes of MP4 files (sent base64)

Each call sends one /v1/score request for the batch, retries on 429 and 5xx with jittered
exponential backoff (as Pref-GRPO's and UnifiedReward's clients do), and returns one float per
video (the judge's mean final soft score over the judged dimensions) with the per-item results;
an item the server could not judge gets `failed_reward` (default 0.0) and its error in info.

As a command: reward_client.py --url URL --prompt P VIDEO [VIDEO...]  (prints JSON)
"""

import argparse
import base64
import json
import random
import sys
import time
import urllib.error
import urllib.request


class EvalverseReward:
    def __init__(self, url, dimensions=None, api_key=None, timeout=300.0, max_retries=8,
                 failed_reward=0.0):
        self.url = url.rstrip("/") + "/v1/score"
        self.dimensions = dimensions
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.failed_reward = failed_reward

    def _item(self, video, prompt):
        if isinstance(video, (bytes, bytearray)):
            video = "data:video/mp4;base64," + base64.b64encode(video).decode("ascii")
        item = {"video": str(video), "prompt": prompt}
        if self.dimensions:
            item["dimensions"] = list(self.dimensions)
        return item

    def _post(self, body):
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    return json.loads(r.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                payload = e.read().decode("utf-8", "replace")
                retry = e.code == 429 or e.code >= 500
                if not retry or attempt == self.max_retries:
                    # A 4xx answer for the whole batch still carries per-item results.
                    try:
                        return json.loads(payload)
                    except ValueError:
                        raise RuntimeError(f"{self.url}: HTTP {e.code}: {payload}") from None
                wait = float(e.headers.get("Retry-After") or 0) or min(10.0, 2.0 ** attempt)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                if attempt == self.max_retries:
                    raise RuntimeError(f"{self.url}: {e}") from None
                wait = min(10.0, 2.0 ** attempt)
            time.sleep(wait * (0.5 + random.random()))
        raise RuntimeError("unreachable")

    def __call__(self, videos, prompts):
        if len(videos) != len(prompts):
            raise ValueError(f"{len(videos)} videos and {len(prompts)} prompts")
        out = self._post({"items": [self._item(v, p) for v, p in zip(videos, prompts)]})
        if "results" not in out:
            raise RuntimeError(f"{self.url}: {out.get('error', out)}")
        rewards = [self.failed_reward if r is None else float(r) for r in out["rewards"]]
        return rewards, {"results": out["results"], "model": out.get("model")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--dimensions", default=None, help="comma-separated")
    ap.add_argument("--api-key-file", default=None)
    ap.add_argument("--upload", action="store_true", help="send the files' bytes (base64)")
    ap.add_argument("videos", nargs="+")
    a = ap.parse_args()
    key = open(a.api_key_file).read().strip() if a.api_key_file else None
    fn = EvalverseReward(a.url, a.dimensions.split(",") if a.dimensions else None, key)
    videos = [open(v, "rb").read() for v in a.videos] if a.upload else a.videos
    rewards, info = fn(videos, [a.prompt] * len(videos))
    json.dump({"rewards": rewards,
               "errors": [r.get("error") for r in info["results"]]}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
