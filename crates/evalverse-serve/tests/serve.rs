//! The server on loopback: concurrent good and bad requests (every good one judged, every bad
//! one a 4xx with a message, the server still serving after), 429 with Retry-After under
//! overload, the scores `evalverse score` writes for the same clips, and a drain on shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use evalverse_eval::pipeline::JudgeOptions;
use evalverse_serve::{ServeConfig, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tiny random base (hidden 32, one layer) in `dir`.
fn tiny_base(dir: &Path) -> PathBuf {
    let tok = root().join("target/test-assets/qwen-tokenizer.json");
    assert!(tok.is_file(), "run scripts/fetch_test_assets.sh");
    let out = dir.join("base");
    evalverse_model::init::write_small(
        &out,
        &tok,
        &evalverse_model::init::SmallSpec {
            hidden: 32,
            layers: 1,
            heads: 2,
            kv_heads: 1,
            vision_hidden: 32,
            vision_depth: 1,
            seed: 0,
            init_std: 0.02,
            embed_std: Some(0.3),
        },
    )
    .unwrap();
    out
}

fn opened(base: &Path) -> evalverse_train::judge_spec::OpenedJudge {
    let b = base.to_str().unwrap().to_string();
    let o = JudgeOptions {
        bundle: None,
        checkpoint: Some("none"),
        base: Some(&b),
        fusion: None,
        verify_base: false,
        gate: None,
        max_new_tokens: Some(2),
        device: Default::default(),
        dtype: evalverse_train::recipe::Dtype::F32,
    };
    o.open().unwrap()
}

fn server(base: &Path, cfg: ServeConfig) -> Server {
    evalverse_serve::start::<evalverse_model::Cpu>(
        opened(base),
        evalverse_data::taxonomy::Taxonomy::evalverse(),
        evalverse_train::recipe::Dtype::F32,
        Default::default(),
        cfg,
    )
    .unwrap()
}

fn config(dir: &Path) -> ServeConfig {
    ServeConfig {
        allowed_media_roots: vec![root().join("data/sample")],
        max_body: 256 << 10,
        api_key: Some("sekrit".into()),
        cache_dir: dir.join("cache"),
        ..ServeConfig::default()
    }
}

/// Serve in the background; returns the address and the trigger that drains the server.
async fn spawn(
    s: Server,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(async move {
        s.serve(listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, tx, h)
}

/// One HTTP/1.1 request; (status, headers, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &[u8],
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers.to_string(), body.to_string())
}

fn sample_clips(n: usize) -> Vec<(String, String)> {
    let ds = evalverse_data::dataset::Dataset::load(&root().join("data/sample")).unwrap();
    ds.clips
        .iter()
        .take(n)
        .map(|c| (c.record.video.clone(), c.record.prompt.clone()))
        .collect()
}

fn item(video: &str, prompt: &str) -> serde_json::Value {
    serde_json::json!({"video": video, "prompt": prompt, "dimensions": ["lens", "vocal"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_good_and_bad_requests_are_each_answered_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let (addr, stop, handle) = spawn(server(&base, config(dir.path()))).await;
    let clips = sample_clips(4);
    let good =
        |i: usize| serde_json::json!({"items": [item(&clips[i].0, &clips[i].1)]}).to_string();
    let cases: Vec<(String, Option<&str>, u16, &str)> = vec![
        (good(0), Some("sekrit"), 200, ""),
        (good(1), Some("sekrit"), 200, ""),
        (good(2), Some("sekrit"), 200, ""),
        (good(3), Some("sekrit"), 200, ""),
        ("{\"items\": [".into(), Some("sekrit"), 400, "not a score request"),
        (serde_json::json!({"items": [item("../../Cargo.toml", "x")]}).to_string(), Some("sekrit"), 403, "allowed media root"),
        (serde_json::json!({"items": [item("/dev/zero", "x")]}).to_string(), Some("sekrit"), 403, "allowed media root"),
        (serde_json::json!({"items": [{"video": clips[0].0, "dimensions": ["lens"]}]}).to_string(), Some("sekrit"), 400, "no prompt"),
        (serde_json::json!({"items": [{"video": clips[0].0, "prompt": "p", "dimensions": ["bokeh"]}]}).to_string(), Some("sekrit"), 400, "'bokeh'"),
        (serde_json::json!({"items": [item("data:video/mp4;base64,aGVsbG8gd29ybGQ=", "x")]}).to_string(), Some("sekrit"), 422, "could not be decoded"),
        (serde_json::json!({"items": [item("https://example.com/a.mp4", "x")]}).to_string(), Some("sekrit"), 403, "not fetched"),
        (good(0), Some("wrong"), 401, "API key"),
        (format!("{{\"items\": [{{\"video\": \"{}\", \"prompt\": \"p\"}}]}}", "A".repeat(300 << 10)), Some("sekrit"), 413, ""),
    ];
    let tasks: Vec<_> = cases
        .into_iter()
        .map(|(body, key, want, needle)| {
            tokio::spawn(async move {
                let (status, _, text) = http(addr, "POST", "/v1/score", key, body.as_bytes()).await;
                (status, want, needle, text)
            })
        })
        .collect();
    for t in tasks {
        let (status, want, needle, text) = t.await.unwrap();
        assert_eq!(status, want, "{text}");
        assert!(text.contains(needle), "{needle:?} not in {text}");
        if want == 200 {
            let r: serde_json::Value = serde_json::from_str(&text).unwrap();
            let res = &r["results"][0];
            assert_eq!(res["status"], 200, "{r}");
            assert!(res["soft"]["lens"].is_number(), "{r}");
            // The base answers no score line in 2 tokens: no level, a soft score all the same.
            assert!(res["scores"]["lens"].is_null(), "{r}");
            assert_eq!(res["judgements"][0]["verdict"]["kind"], "malformed", "{r}");
            assert_eq!(res["judgements"].as_array().unwrap().len(), 2, "{r}");
            assert!(r["rewards"][0].is_number(), "{r}");
        }
    }
    // A mixed request: the good item judged, the bad one answered with its own error.
    let mixed =
        serde_json::json!({"items": [item(&clips[0].0, &clips[0].1), item("../x.mp4", "p")]});
    let (status, _, text) = http(
        addr,
        "POST",
        "/v1/score",
        Some("sekrit"),
        mixed.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["results"][1]["status"], 403);
    assert!(
        r["rewards"][0].is_number() && r["rewards"][1].is_null(),
        "{r}"
    );
    // Still serving; the metrics count what happened.
    assert_eq!(http(addr, "GET", "/health", None, b"").await.0, 200);
    let (status, _, models) = http(addr, "GET", "/v1/models", Some("sekrit"), b"").await;
    assert_eq!(status, 200);
    assert!(models.contains("\"lens\""), "{models}");
    let (_, _, m) = http(addr, "GET", "/metrics", Some("sekrit"), b"").await;
    assert!(
        m.contains("evalverse_requests_total{endpoint=\"/v1/score\",status=\"403\"} 3"),
        "{m}"
    );
    assert!(m.contains("evalverse_batch_clips_count"), "{m}");
    stop.send(()).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_max_concurrent_a_request_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let cfg = ServeConfig {
        max_concurrent: 1,
        ..config(dir.path())
    };
    let (addr, stop, handle) = spawn(server(&base, cfg)).await;
    let clips = sample_clips(6);
    let body =
        serde_json::json!({"items": clips.iter().map(|(v, p)| item(v, p)).collect::<Vec<_>>()})
            .to_string();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let b = body.clone();
            tokio::spawn(async move {
                http(addr, "POST", "/v1/score", Some("sekrit"), b.as_bytes()).await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        let (status, headers, _) = t.await.unwrap();
        if status == 429 {
            assert!(
                headers.to_ascii_lowercase().contains("retry-after: 1"),
                "{headers}"
            );
        }
        codes.push(status);
    }
    assert!(codes.contains(&200) && codes.contains(&429), "{codes:?}");
    stop.send(()).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_gives_the_scores_score_writes_and_drains_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let clips = sample_clips(5);
    // `evalverse score`'s library path on the same clips.
    let list = dir.path().join("list.jsonl");
    let rows: String = clips
        .iter()
        .map(|(v, p)| {
            serde_json::json!({"id": v, "video": root().join("data/sample").join(v), "prompt": p, "dimensions": ["lens", "vocal"]})
                .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&list, rows).unwrap();
    let (rows, errs) = evalverse_judge::score::read_list(&list).unwrap();
    assert!(errs.is_empty());
    let judge = evalverse_eval::pipeline::load::<evalverse_model::Cpu>(
        &opened(&base),
        evalverse_data::taxonomy::Taxonomy::evalverse(),
        evalverse_train::recipe::Dtype::F32,
        &Default::default(),
    )
    .unwrap();
    let out = dir.path().join("results.jsonl");
    evalverse_judge::score::score(
        &judge,
        &rows,
        &out,
        &evalverse_data::cache::DecodeCache::new(dir.path().join("cache-score")),
        8,
        16,
        |_, _| {},
    )
    .unwrap();
    drop(judge);
    let want: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (addr, stop, handle) = spawn(server(&base, config(dir.path()))).await;
    let body =
        serde_json::json!({"items": clips.iter().map(|(v, p)| item(v, p)).collect::<Vec<_>>()})
            .to_string();
    // Shutdown is asked while the request is in flight: it still gets its answer.
    let req = tokio::spawn(async move {
        http(addr, "POST", "/v1/score", Some("sekrit"), body.as_bytes()).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let (status, _, text) = req.await.unwrap();
    assert_eq!(status, 200, "{text}");
    handle.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after the drain"
    );
    let got: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (w, g) in want.iter().zip(got["results"].as_array().unwrap()) {
        for d in ["lens", "vocal"] {
            let (a, b) = (&w["soft"][d], &g["soft"][d]);
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => assert!((x - y).abs() < 1e-5, "{d}: score {x} vs serve {y}"),
                _ => assert_eq!(a, b, "{d}"),
            }
            assert_eq!(w["scores"][d], g["scores"][d], "{d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prompt_group_is_compared_in_both_orders_and_the_python_client_gets_rewards() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let (addr, stop, handle) = spawn(server(&base, config(dir.path()))).await;
    let clips = sample_clips(3);
    let body = serde_json::json!({
        "prompt": clips[0].1,
        "videos": clips.iter().enumerate().map(|(i, (v, _))| serde_json::json!({"id": format!("v{i}"), "video": v})).collect::<Vec<_>>(),
        "dimensions": ["lens", "pacing"],
    });
    let (status, _, text) = http(
        addr,
        "POST",
        "/v1/compare",
        Some("sekrit"),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut firsts = Vec::new();
    for d in ["lens", "pacing"] {
        let c = &r["dimensions"][d];
        let wins: Vec<f64> = c["win_rates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_f64().unwrap())
            .collect();
        // Debiased preferences of a pair add to one, so a group's win rates add to n / 2.
        assert!(
            (wins.iter().sum::<f64>() - 1.5).abs() < 1e-9,
            "{d}: {wins:?}"
        );
        let prefs = c["preferences"].as_array().unwrap();
        assert_eq!(prefs.len(), 3, "{c}");
        for p in prefs {
            let (f, s) = (
                p["p_a_first"].as_f64().unwrap(),
                p["p_a_second"].as_f64().unwrap(),
            );
            firsts.push(f);
            firsts.push(1.0 - s);
        }
    }
    let bias = firsts.iter().sum::<f64>() / firsts.len() as f64 - 0.5;
    assert!(
        (r["position_bias"].as_f64().unwrap() - bias).abs() < 1e-9,
        "{r}"
    );
    assert_eq!(r["ids"], serde_json::json!(["v0", "v1", "v2"]));
    // A group of one, and a path outside the media roots.
    let one = serde_json::json!({"prompt": "p", "videos": [{"video": clips[0].0}]});
    assert_eq!(
        http(
            addr,
            "POST",
            "/v1/compare",
            Some("sekrit"),
            one.to_string().as_bytes()
        )
        .await
        .0,
        400
    );
    let out = serde_json::json!({"prompt": "p", "videos": [{"video": clips[0].0}, {"video": "../../Cargo.toml"}]});
    assert_eq!(
        http(
            addr,
            "POST",
            "/v1/compare",
            Some("sekrit"),
            out.to_string().as_bytes()
        )
        .await
        .0,
        403
    );

    // The standard-library Python client, as an RL loop's reward function would call it.
    let key = dir.path().join("key");
    std::fs::write(&key, "sekrit\n").unwrap();
    let o = tokio::process::Command::new("python3")
        .arg(root().join("scripts/reward_client.py"))
        .args([
            "--url",
            &format!("http://{addr}"),
            "--prompt",
            &clips[0].1,
            "--dimensions",
            "lens",
        ])
        .arg("--api-key-file")
        .arg(&key)
        .args([clips[0].0.as_str(), "../escape.mp4"])
        .output()
        .await
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["rewards"][0].as_f64().unwrap() > 1.0, "{v}");
    assert_eq!(
        v["rewards"][1], 0.0,
        "a failed item gets the failed reward: {v}"
    );
    assert!(
        v["errors"][1]
            .as_str()
            .unwrap()
            .contains("allowed media root"),
        "{v}"
    );
    stop.send(()).unwrap();
    handle.await.unwrap();
}

fn png_b64(name: &str) -> String {
    use base64::Engine as _;
    let bytes = std::fs::read(root().join("data/sample/refs").join(name)).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_openai_chat_client_gets_the_judges_scores_and_frames_are_judged() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_base(dir.path());
    let (addr, stop, handle) = spawn(server(&base, config(dir.path()))).await;
    let clips = sample_clips(1);
    let post = |path: &'static str, body: serde_json::Value| async move {
        let (s, _, t) = http(
            addr,
            "POST",
            path,
            Some("sekrit"),
            body.to_string().as_bytes(),
        )
        .await;
        (
            s,
            serde_json::from_str::<serde_json::Value>(&t).unwrap_or(serde_json::Value::Null),
            t,
        )
    };
    let (s, scored, t) = post(
        "/v1/score",
        serde_json::json!({"items": [item(&clips[0].0, &clips[0].1)]}),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    // A vLLM client's request, with the evalverse `dimensions` in its extra body.
    let chat = serde_json::json!({
        "model": "UnifiedReward", "max_tokens": 256, "temperature": 0.0,
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": format!("file://{}", root().join("data/sample").join(&clips[0].0).canonicalize().unwrap().display())}},
            {"type": "text", "text": clips[0].1}]}],
        "mm_processor_kwargs": {"fps": 2.0},
        "dimensions": ["lens", "vocal"],
    });
    let (s, c, t) = post("/v1/chat/completions", chat).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    let content = c["choices"][0]["message"]["content"].as_str().unwrap();
    for d in ["lens", "vocal"] {
        let (a, b) = (&c["evalverse"]["soft"][d], &scored["results"][0]["soft"][d]);
        match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{d}: chat {x} vs score {y}"),
            _ => assert_eq!(a, b, "{d}: N/A on both sides"),
        }
        assert!(content.contains(&format!("{d}: ")), "{content}");
    }
    let reward = scored["rewards"][0].as_f64().unwrap();
    assert!(
        content.ends_with(&format!("Final Score: {reward:.2}")),
        "{content}"
    );

    // Frames: vLLM's data:video/png list, UnifiedReward's image_url parts, /v1/score's object.
    let (a, b) = (png_b64("pg003.png"), png_b64("pg007.png"));
    let listed = format!("data:video/png;base64,{a},{a},{b},{b}");
    let frames_chat = |video: serde_json::Value| {
        serde_json::json!({"messages": [{"role": "user", "content": [video, {"type": "text", "text": "a lighthouse"}]}],
                           "dimensions": ["lens"], "media_io_kwargs": {"video": {"fps": 2}}})
    };
    let (s, c1, t) = post(
        "/v1/chat/completions",
        frames_chat(serde_json::json!({"type": "video_url", "video_url": {"url": listed}})),
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let (s, c2, t) = post("/v1/score", serde_json::json!({"items": [{"video": {"frames": [a, a, b, b], "fps": 2.0}, "prompt": "a lighthouse", "dimensions": ["lens"]}]})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(c2["results"][0]["video"], "upload");
    let (x, y) = (
        c1["evalverse"]["soft"]["lens"].as_f64().unwrap(),
        c2["results"][0]["soft"]["lens"].as_f64().unwrap(),
    );
    assert!((x - y).abs() < 1e-9, "the same frames two ways: {x} vs {y}");
    let image = |b64: &str| serde_json::json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}});
    let body = serde_json::json!({"messages": [{"role": "user", "content": [image(&a), image(&b), {"type": "text", "text": "a lighthouse"}]}]});
    let (s, c3, t) = post("/v1/chat/completions", body).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        c3["evalverse"]["judgements"].as_array().unwrap().len(),
        evalverse_data::taxonomy::Taxonomy::evalverse()
            .dimensions
            .len(),
        "every dimension when none named"
    );

    // Refused with a reason; an oversized body is a 413 counted in /metrics.
    let (s, e, _) = post(
        "/v1/chat/completions",
        serde_json::json!({"stream": true, "messages": []}),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("streaming"),
        "{e}"
    );
    let (s, e, _) = post("/v1/chat/completions", frames_chat(serde_json::json!({"type": "video_url", "video_url": {"url": "data:video/jpeg;base64,aGVsbG8="}}))).await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a JPEG or PNG"),
        "{e}"
    );
    let huge =
        serde_json::json!({"messages": [{"role": "user", "content": "A".repeat(300 << 10)}]});
    assert_eq!(post("/v1/chat/completions", huge).await.0, 413);
    let (_, _, m) = http(addr, "GET", "/metrics", Some("sekrit"), b"").await;
    assert!(
        m.contains("evalverse_requests_total{endpoint=\"/v1/chat/completions\",status=\"413\"} 1"),
        "{m}"
    );
    stop.send(()).unwrap();
    handle.await.unwrap();
}
