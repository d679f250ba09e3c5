//! The judge bundle: one folder holding everything a judge needs except the base weights,
//! which it names (a folder path or `hf:ORG/NAME`) with a fingerprint of their files. What was
//! measured by `eval` is what is shipped: the same adapter, reward head, fusion model, gate
//! policy, operators, frame sampling, response unit, prompt version and taxonomy.
//!
//! Layout:
//! ```text
//! judge.json       the manifest (BundleManifest): spec, versions, base fingerprint, part hashes
//! adapter/         PEFT adapter (+ reward_head.* when the judge scores with a head); absent for a bare base
//! fusion.json      the fitted fusion model (optional)
//! taxonomy.toml    the taxonomy the judge was trained and measured on
//! tokenizer.json   only when the judge's tokenizer is not the base checkpoint's own
//! eval/            report.json and report.md of the judge's held-out evaluation (optional)
//! README.md        the model card
//! ```
//! Loading checks every part's SHA-256 against the manifest, the operator and prompt versions
//! against this build, and the base weights' safetensors headers (a cheap fingerprint) against
//! the ones taken at export, or every byte of the base with `verify_base`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use evalverse_data::operators::OPERATORS_VERSION;
use evalverse_data::taxonomy::Taxonomy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fusion::FusionModel;
use crate::prompt::PROMPT_VERSION;
use crate::{JudgeError, JudgeSpec};

/// The manifest's file name.
pub const MANIFEST: &str = "judge.json";
/// The value of `BundleManifest::format`.
pub const FORMAT: &str = "evalverse-judge";
/// Version of the bundle layout.
pub const FORMAT_VERSION: u32 = 1;

/// A file of the base checkpoint: its name in the checkpoint folder, size and hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseFile {
    pub name: String,
    pub bytes: u64,
    /// SHA-256 of the whole file.
    pub sha256: String,
}

/// The base model a bundle runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseRef {
    /// A folder path or `hf:ORG/NAME[@REV]`, as given at export.
    pub source: String,
    /// config.json and every weight file (tokenizer.json too when the judge uses the base's).
    pub files: Vec<BaseFile>,
    /// SHA-256 over config.json and the header (length prefix + JSON) of every safetensors
    /// file: checked at every load, cheap at any model size.
    pub header_sha256: String,
}

/// The manifest of a judge bundle (`judge.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    pub format: String,
    pub format_version: u32,
    /// The run (or adapter) the bundle was exported from, for the record.
    pub exported_from: String,
    pub base: BaseRef,
    /// "base" (the base checkpoint's tokenizer.json) or "tokenizer.json" (in the bundle).
    pub tokenizer: String,
    /// The judge's settings; its paths (`base`, `adapter`, `tokenizer`) are resolved at load.
    pub spec: JudgeSpec,
    pub prompt_version: u32,
    pub operators_version: u32,
    pub taxonomy_name: String,
    /// `Taxonomy::fingerprint` of taxonomy.toml.
    pub taxonomy_sha256: String,
    /// SHA-256 of every other file of the bundle, by path relative to it.
    pub parts: BTreeMap<String, String>,
}

/// SHA-256 (hex) of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, JudgeError> {
    let io = |e: std::io::Error| JudgeError::Runtime(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cheap fingerprint of a checkpoint: SHA-256 over config.json and each safetensors file's
/// name and header (8-byte length + JSON header), in the order given.
pub fn header_fingerprint(config: &Path, weights: &[PathBuf]) -> Result<String, JudgeError> {
    let mut h = Sha256::new();
    let io = |p: &Path, e: std::io::Error| JudgeError::Runtime(format!("{}: {e}", p.display()));
    h.update(std::fs::read(config).map_err(|e| io(config, e))?);
    for w in weights {
        let mut f = std::fs::File::open(w).map_err(|e| io(w, e))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len).map_err(|e| io(w, e))?;
        let n = u64::from_le_bytes(len);
        let size = f.metadata().map_err(|e| io(w, e))?.len();
        if n > size.saturating_sub(8) || n > 100 << 20 {
            return Err(JudgeError::Config(format!(
                "{}: not a safetensors file (header length {n} of a {size}-byte file)",
                w.display()
            )));
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header).map_err(|e| io(w, e))?;
        h.update(file_name(w).as_bytes());
        h.update(len);
        h.update(&header);
    }
    Ok(hex(&h.finalize()))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Fingerprint the base named by `source` (every file hashed in full, and the headers).
pub fn fingerprint_base(source: &str, with_tokenizer: bool) -> Result<BaseRef, JudgeError> {
    let files = crate::load::base_files(source)?;
    let mut list = vec![files.config.clone()];
    list.extend(files.weights.iter().cloned());
    if with_tokenizer {
        if let Some(t) = &files.tokenizer {
            list.push(t.clone());
        }
    }
    let mut out = Vec::new();
    for p in &list {
        let bytes = std::fs::metadata(p)
            .map_err(|e| JudgeError::Runtime(format!("{}: {e}", p.display())))?
            .len();
        out.push(BaseFile {
            name: file_name(p),
            bytes,
            sha256: sha256_file(p)?,
        });
    }
    Ok(BaseRef {
        source: source.to_string(),
        files: out,
        header_sha256: header_fingerprint(&files.config, &files.weights)?,
    })
}

/// Check the base found at `source` against the bundle's fingerprint: the headers always,
/// every byte when `full`. The error says which file differs and how to override.
pub fn check_base(expected: &BaseRef, source: &str, full: bool) -> Result<(), JudgeError> {
    let files = crate::load::base_files(source)?;
    let header = header_fingerprint(&files.config, &files.weights)?;
    let mismatch = |what: String| {
        JudgeError::Config(format!(
            "base model {source} is not the one this judge was exported with ({what}); pass the \
             right one with --base, or re-export the judge on this base"
        ))
    };
    if header != expected.header_sha256 {
        return Err(mismatch(format!(
            "config.json or the safetensors headers differ: sha256 {header}, expected {}",
            expected.header_sha256
        )));
    }
    if full {
        let mut here = vec![files.config.clone()];
        here.extend(files.weights.iter().cloned());
        here.extend(files.tokenizer.iter().cloned());
        for want in &expected.files {
            let Some(p) = here.iter().find(|p| file_name(p) == want.name) else {
                return Err(mismatch(format!("{} is missing", want.name)));
            };
            let got = sha256_file(p)?;
            if got != want.sha256 {
                return Err(mismatch(format!(
                    "{} has sha256 {got}, expected {}",
                    p.display(),
                    want.sha256
                )));
            }
        }
    }
    Ok(())
}

/// What goes into a bundle.
pub struct BundleParts<'a> {
    pub spec: &'a JudgeSpec,
    pub taxonomy: &'a Taxonomy,
    pub fusion: Option<&'a FusionModel>,
    /// Folder with report.json (and report.md) of the judge's held-out evaluation.
    pub eval: Option<&'a Path>,
    /// The model card (README.md).
    pub card: &'a str,
    pub exported_from: &'a str,
}

fn copy_into(from: &Path, dir: &Path, rel: &str) -> Result<(), JudgeError> {
    let to = dir.join(rel);
    if let Some(p) = to.parent() {
        std::fs::create_dir_all(p)
            .map_err(|e| JudgeError::Runtime(format!("{}: {e}", p.display())))?;
    }
    std::fs::copy(from, &to).map_err(|e| {
        JudgeError::Runtime(format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })?;
    Ok(())
}

/// Write a bundle into the empty folder `dir` (callers write into a temporary folder and
/// rename it into place, so a bundle is never half-written).
pub fn write(dir: &Path, p: &BundleParts) -> Result<BundleManifest, JudgeError> {
    let write_file = |rel: &str, bytes: &[u8]| {
        evalverse_data::error::write_atomic(&dir.join(rel), bytes)
            .map_err(|e| JudgeError::Runtime(e.to_string()))
    };
    let base_files = crate::load::base_files(&p.spec.base)?;
    let own_tokenizer = match (&p.spec.tokenizer, &base_files.tokenizer) {
        (None, Some(_)) => false,
        (Some(t), Some(b)) => sha256_file(t)? != sha256_file(b)?,
        (Some(_), None) => true,
        (None, None) => {
            return Err(JudgeError::Config(format!(
                "base model {} has no tokenizer.json and the judge names none",
                p.spec.base
            )))
        }
    };
    if own_tokenizer {
        copy_into(
            p.spec.tokenizer.as_deref().expect("own"),
            dir,
            "tokenizer.json",
        )?;
    }
    if let Some(adapter) = &p.spec.adapter {
        let entries = std::fs::read_dir(adapter)
            .map_err(|e| JudgeError::Config(format!("adapter {}: {e}", adapter.display())))?;
        for e in entries.flatten() {
            if e.path().is_file() {
                copy_into(
                    &e.path(),
                    dir,
                    &format!("adapter/{}", e.file_name().to_string_lossy()),
                )?;
            }
        }
    }
    if let Some(f) = p.fusion {
        f.save(&dir.join("fusion.json"))?;
    }
    write_file("taxonomy.toml", p.taxonomy.source_toml().as_bytes())?;
    if let Some(eval) = p.eval {
        for name in ["report.json", "report.md"] {
            if eval.join(name).is_file() {
                copy_into(&eval.join(name), dir, &format!("eval/{name}"))?;
            }
        }
    }
    write_file("README.md", p.card.as_bytes())?;
    let mut parts = BTreeMap::new();
    collect_parts(dir, dir, &mut parts)?;
    let spec = JudgeSpec {
        base: p.spec.base.clone(),
        tokenizer: None,
        adapter: p.spec.adapter.as_ref().map(|_| PathBuf::from("adapter")),
        ..p.spec.clone()
    };
    let m = BundleManifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        exported_from: p.exported_from.to_string(),
        base: fingerprint_base(&p.spec.base, !own_tokenizer)?,
        tokenizer: if own_tokenizer {
            "tokenizer.json".into()
        } else {
            "base".into()
        },
        spec,
        prompt_version: PROMPT_VERSION,
        operators_version: OPERATORS_VERSION,
        taxonomy_name: p.taxonomy.name.clone(),
        taxonomy_sha256: p.taxonomy.fingerprint(),
        parts,
    };
    write_file(
        MANIFEST,
        serde_json::to_string_pretty(&m)
            .expect("manifest")
            .as_bytes(),
    )?;
    Ok(m)
}

fn collect_parts(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
) -> Result<(), JudgeError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| JudgeError::Runtime(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect_parts(root, &p, out)?;
        } else {
            let rel = p
                .strip_prefix(root)
                .expect("inside")
                .to_string_lossy()
                .replace('\\', "/");
            if rel != MANIFEST {
                out.insert(rel, sha256_file(&p)?);
            }
        }
    }
    Ok(())
}

/// A bundle read back and checked: its manifest, the spec with paths resolved into the
/// bundle, the taxonomy and the fusion model.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: BundleManifest,
    pub spec: JudgeSpec,
    pub taxonomy: Taxonomy,
    pub fusion: Option<FusionModel>,
}

/// Read and check the bundle in `dir`. `base` overrides where the base weights are found (the
/// manifest's source otherwise); they are checked against the fingerprint (every byte when
/// `verify_base`). Errors name the bundle file and what does not match.
pub fn read(dir: &Path, base: Option<&str>, verify_base: bool) -> Result<Bundle, JudgeError> {
    let mpath = dir.join(MANIFEST);
    let bad = |m: String| JudgeError::Config(format!("{}: {m}", mpath.display()));
    let text = std::fs::read_to_string(&mpath).map_err(|e| {
        JudgeError::Config(format!(
            "{}: {e} (a judge bundle is made by `evalverse export RUN --format judge`)",
            mpath.display()
        ))
    })?;
    let m: BundleManifest =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a judge manifest: {e}")))?;
    if m.format != FORMAT || m.format_version != FORMAT_VERSION {
        return Err(bad(format!(
            "format {} v{} (this build reads {FORMAT} v{FORMAT_VERSION})",
            m.format, m.format_version
        )));
    }
    if m.operators_version != OPERATORS_VERSION {
        return Err(bad(format!(
            "the judge was measured with operators version {}, this build's operators are version \
             {OPERATORS_VERSION}: its evidence, gate and fusion would differ; re-export it with this build",
            m.operators_version
        )));
    }
    if m.prompt_version != PROMPT_VERSION {
        return Err(bad(format!(
            "the judge was trained on prompt version {}, this build writes version {PROMPT_VERSION}",
            m.prompt_version
        )));
    }
    let mut found = BTreeMap::new();
    collect_parts(dir, dir, &mut found)?;
    for (rel, want) in &m.parts {
        match found.get(rel) {
            None => return Err(bad(format!("part {rel} is missing"))),
            Some(got) if got != want => {
                return Err(bad(format!(
                    "part {rel} was altered (sha256 {got}, the manifest says {want})"
                )))
            }
            _ => {}
        }
    }
    if let Some(extra) = found.keys().find(|k| !m.parts.contains_key(*k)) {
        return Err(bad(format!("{extra} is not part of the bundle's manifest")));
    }
    // The tokenizer and adapter are the bundle's own hashed parts, in the layout `write` makes:
    // a path elsewhere would load files no hash covers.
    match m.tokenizer.as_str() {
        "base" => {}
        "tokenizer.json" if m.parts.contains_key("tokenizer.json") => {}
        t => {
            return Err(bad(format!(
                "tokenizer \"{t}\": must be \"base\" or \"tokenizer.json\", a part of the bundle"
            )))
        }
    }
    if let Some(a) = &m.spec.adapter {
        if a != Path::new("adapter") || !m.parts.keys().any(|k| k.starts_with("adapter/")) {
            return Err(bad(format!(
                "spec.adapter \"{}\": must be \"adapter\", the bundle's adapter folder",
                a.display()
            )));
        }
    }
    let tpath = dir.join("taxonomy.toml");
    let ttext = std::fs::read_to_string(&tpath)
        .map_err(|e| JudgeError::Config(format!("{}: {e}", tpath.display())))?;
    let taxonomy =
        Taxonomy::from_toml_str(&ttext, &tpath).map_err(|e| JudgeError::Config(e.to_string()))?;
    if taxonomy.fingerprint() != m.taxonomy_sha256 {
        return Err(bad(format!(
            "taxonomy.toml parses to another taxonomy than the one recorded ({})",
            m.taxonomy_name
        )));
    }
    let fusion = match dir.join("fusion.json") {
        p if p.is_file() => Some(FusionModel::load(&p)?),
        _ => None,
    };
    let source = base.unwrap_or(&m.base.source).to_string();
    check_base(&m.base, &source, verify_base)?;
    let spec = JudgeSpec {
        base: source,
        tokenizer: (m.tokenizer != "base").then(|| dir.join(&m.tokenizer)),
        adapter: m.spec.adapter.as_ref().map(|a| dir.join(a)),
        ..m.spec.clone()
    };
    Ok(Bundle {
        dir: dir.to_path_buf(),
        manifest: m,
        spec,
        taxonomy,
        fusion,
    })
}

impl Bundle {
    /// Refuse a dataset whose taxonomy is not the judge's.
    pub fn check_taxonomy(&self, other: &Taxonomy, whose: &str) -> Result<(), JudgeError> {
        if other.fingerprint() == self.taxonomy.fingerprint() {
            return Ok(());
        }
        Err(JudgeError::Config(format!(
            "{whose} uses taxonomy '{}' and the judge {} was trained on taxonomy '{}' with other \
             definitions (sha256 {} vs {}); judge it with a bundle of its taxonomy",
            other.name,
            self.dir.display(),
            self.taxonomy.name,
            &other.fingerprint()[..12],
            &self.taxonomy.fingerprint()[..12]
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle of the tiny fixture base (no adapter, a tokenizer of its own) in `dir`.
    fn tiny_bundle(dir: &Path) -> PathBuf {
        let fixtures =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../evalverse-model/tests/fixtures");
        let tokenizer = dir.join("tokenizer.json");
        std::fs::write(&tokenizer, b"{}").unwrap();
        let spec = JudgeSpec {
            base: fixtures.join("tiny_b").display().to_string(),
            tokenizer: Some(tokenizer),
            adapter: None,
            frames: Default::default(),
            unit: Default::default(),
            prompt_operators: Default::default(),
            gate: Default::default(),
            max_new_tokens: 8,
        };
        let out = dir.join("judge");
        std::fs::create_dir_all(&out).unwrap();
        let parts = BundleParts {
            spec: &spec,
            taxonomy: &Taxonomy::evalverse(),
            fusion: None,
            eval: None,
            card: "# card\n",
            exported_from: "test",
        };
        write(&out, &parts).unwrap();
        out
    }

    /// Edit judge.json's JSON with `f`.
    fn edit_manifest(bundle: &Path, f: impl FnOnce(&mut serde_json::Value)) {
        let p = bundle.join(MANIFEST);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }

    #[test]
    fn a_manifest_naming_a_tokenizer_or_adapter_outside_the_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = tiny_bundle(dir.path());
        read(&bundle, None, false).expect("the bundle as written reads");
        let outside = dir.path().join("tokenizer.json").display().to_string();
        edit_manifest(&bundle, |v| v["tokenizer"] = outside.clone().into());
        let e = read(&bundle, None, false).unwrap_err().to_string();
        assert!(
            e.contains("judge.json") && e.contains("tokenizer") && e.contains(&outside),
            "{e}"
        );
        edit_manifest(&bundle, |v| {
            v["tokenizer"] = "tokenizer.json".into();
            v["spec"]["adapter"] = "../adapter".into();
        });
        let e = read(&bundle, None, false).unwrap_err().to_string();
        assert!(
            e.contains("spec.adapter") && e.contains("../adapter"),
            "{e}"
        );
    }
}
