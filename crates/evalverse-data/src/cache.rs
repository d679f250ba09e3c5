//! A decode cache on disk: a clip is decoded, sampled and preprocessed once across epochs,
//! stages and runs. Entries are keyed by the SHA-256 of the file's bytes and of the
//! preprocessing settings, stored as safetensors, and written atomically; an unreadable entry is
//! treated as a miss and rewritten.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use crate::error::{write_atomic, DataError, Result};
use crate::video::{preprocess_video, FrameSpec, PatchSpec, VisionInput};

/// Bump when the cached layout or the preprocessing code changes its output.
const CACHE_VERSION: u32 = 3;

/// A preprocessed clip: model-ready pixels and, when asked for, mono 16 kHz audio.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedClip {
    pub vision: VisionInput,
    pub audio: Option<Vec<f32>>,
}

/// A file as (path, size, modification time): re-hashed only when one of them changes.
type FileStamp = (PathBuf, u64, Option<SystemTime>);

pub struct DecodeCache {
    dir: PathBuf,
    /// (path, size, mtime) -> content hash, so a file is hashed once per process.
    hashes: Mutex<HashMap<FileStamp, String>>,
}

/// Where a lookup was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

impl DecodeCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DecodeCache {
            dir: dir.into(),
            hashes: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SHA-256 of the file's bytes (hex).
    pub fn content_hash(&self, path: &Path) -> Result<String> {
        let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
        let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
        if let Some(h) = self.hashes.lock().expect("hash memo poisoned").get(&key) {
            return Ok(h.clone());
        }
        let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hex = hex(&hasher.finalize());
        self.hashes
            .lock()
            .expect("hash memo poisoned")
            .insert(key, hex.clone());
        Ok(hex)
    }

    /// Cache key of a clip under these settings.
    pub fn key(
        &self,
        path: &Path,
        spec: &FrameSpec,
        patch: &PatchSpec,
        with_audio: bool,
    ) -> Result<String> {
        let content = self.content_hash(path)?;
        let settings = serde_json::json!({
            "version": CACHE_VERSION, "spec": spec, "patch": patch, "audio": with_audio,
        });
        let mut h = Sha256::new();
        h.update(content.as_bytes());
        h.update(settings.to_string().as_bytes());
        Ok(hex(&h.finalize()))
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.safetensors"))
    }

    /// The preprocessed clip, from the cache or decoded now (and stored).
    pub fn get_or_decode(
        &self,
        path: &Path,
        spec: &FrameSpec,
        patch: &PatchSpec,
        with_audio: bool,
    ) -> Result<(CachedClip, Lookup)> {
        let key = self.key(path, spec, patch, with_audio)?;
        let entry = self.entry_path(&key);
        if let Ok(bytes) = std::fs::read(&entry) {
            if let Some(clip) = decode_entry(&bytes) {
                return Ok((clip, Lookup::Hit));
            }
        }
        let vision = preprocess_video(path, spec, patch)?;
        let audio = if with_audio {
            crate::media::decode_audio_mono_16k(path)?
        } else {
            None
        };
        let clip = CachedClip { vision, audio };
        write_atomic(&entry, &encode_entry(&clip)?)?;
        Ok((clip, Lookup::Miss))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn encode_entry(clip: &CachedClip) -> Result<Vec<u8>> {
    let v = &clip.vision;
    let rows = v.pixel_values.len() / v.row_len.max(1);
    let pixels = f32_bytes(&v.pixel_values);
    let grid = i64_bytes(&v.grid_thw.map(|x| x as i64));
    let idx = i64_bytes(
        &v.frame_indices
            .iter()
            .map(|&x| x as i64)
            .collect::<Vec<_>>(),
    );
    let audio = clip.audio.as_deref().map(f32_bytes);
    let bad = |e: safetensors::SafeTensorError| DataError::Invalid(format!("cache entry: {e}"));
    let mut tensors = vec![
        (
            "pixel_values".to_string(),
            TensorView::new(Dtype::F32, vec![rows, v.row_len], &pixels).map_err(bad)?,
        ),
        (
            "grid_thw".to_string(),
            TensorView::new(Dtype::I64, vec![3], &grid).map_err(bad)?,
        ),
        (
            "frame_indices".to_string(),
            TensorView::new(Dtype::I64, vec![v.frame_indices.len()], &idx).map_err(bad)?,
        ),
    ];
    if let (Some(a), Some(bytes)) = (&clip.audio, &audio) {
        tensors.push((
            "audio".to_string(),
            TensorView::new(Dtype::F32, vec![a.len()], bytes).map_err(bad)?,
        ));
    }
    let meta = HashMap::from([
        (
            "second_per_grid".to_string(),
            format!("{:e}", v.second_per_grid),
        ),
        ("video_fps".to_string(), format!("{:e}", v.video_fps)),
        ("has_audio".to_string(), clip.audio.is_some().to_string()),
    ]);
    safetensors::serialize(tensors, &Some(meta)).map_err(bad)
}

fn decode_entry(bytes: &[u8]) -> Option<CachedClip> {
    let st = safetensors::SafeTensors::deserialize(bytes).ok()?;
    let f32s = |name: &str| -> Option<(Vec<f32>, Vec<usize>)> {
        let t = st.tensor(name).ok()?;
        (t.dtype() == Dtype::F32).then_some(())?;
        let v = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Some((v, t.shape().to_vec()))
    };
    let i64s = |name: &str| -> Option<Vec<i64>> {
        let t = st.tensor(name).ok()?;
        (t.dtype() == Dtype::I64).then_some(())?;
        Some(
            t.data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        )
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    let meta = meta.metadata().as_ref()?;
    let (pixel_values, shape) = f32s("pixel_values")?;
    let grid = i64s("grid_thw")?;
    let vision = VisionInput {
        pixel_values,
        row_len: *shape.get(1)?,
        grid_thw: [
            grid.first().copied()? as usize,
            *grid.get(1)? as usize,
            *grid.get(2)? as usize,
        ],
        second_per_grid: meta.get("second_per_grid")?.parse().ok()?,
        frame_indices: i64s("frame_indices")?
            .into_iter()
            .map(|x| x as usize)
            .collect(),
        video_fps: meta.get("video_fps")?.parse().ok()?,
    };
    let audio = match meta.get("has_audio")?.as_str() {
        "true" => Some(f32s("audio")?.0),
        _ => None,
    };
    Some(CachedClip { vision, audio })
}

/// Operator evidence is cached beside the decoded clip: a JSON entry keyed by the SHA-256 of the
/// file's bytes, the analysis settings, the operator set and the operators' version, written
/// atomically; an entry that does not parse (or was made by other operators) is a miss.
impl DecodeCache {
    pub fn evidence_key(
        &self,
        path: &Path,
        set: &crate::operators::OperatorSet,
        spec: &crate::operators::AnalysisSpec,
    ) -> Result<String> {
        let content = self.content_hash(path)?;
        let settings = serde_json::json!({
            "evidence": crate::operators::OPERATORS_VERSION, "spec": spec, "operators": set,
        });
        let mut h = Sha256::new();
        h.update(content.as_bytes());
        h.update(settings.to_string().as_bytes());
        Ok(hex(&h.finalize()))
    }

    fn evidence_path(&self, key: &str) -> PathBuf {
        self.dir
            .join(&key[..2])
            .join(format!("{key}.evidence.json"))
    }

    /// The operators' evidence for a clip, from the cache or measured now (and stored).
    pub fn get_or_measure(
        &self,
        path: &Path,
        set: &crate::operators::OperatorSet,
        spec: &crate::operators::AnalysisSpec,
    ) -> Result<(crate::operators::Evidence, Lookup)> {
        let key = self.evidence_key(path, set, spec)?;
        let entry = self.evidence_path(&key);
        if let Ok(bytes) = std::fs::read(&entry) {
            if let Ok(ev) = serde_json::from_slice::<crate::operators::Evidence>(&bytes) {
                if ev.version == crate::operators::OPERATORS_VERSION && &ev.operators == set {
                    return Ok((ev, Lookup::Hit));
                }
            }
        }
        let ev = crate::operators::measure_clip_with(path, set, spec)?;
        let json = serde_json::to_vec(&ev)
            .map_err(|e| DataError::Invalid(format!("evidence of {}: {e}", path.display())))?;
        write_atomic(&entry, &json)?;
        Ok((ev, Lookup::Miss))
    }
}

/// Clips preprocessed for a run, and the ones that could not be decoded.
#[derive(Debug)]
pub struct LoadedClips<'a> {
    pub clips: Vec<(&'a crate::manifest::ClipRecord, CachedClip)>,
    /// (clip id, error naming the file) for every clip that was skipped.
    pub skipped: Vec<(String, String)>,
    pub cache_hits: usize,
}

impl DecodeCache {
    /// Preprocess `clips` of a dataset through the cache. A clip that fails to decode is skipped
    /// and recorded (id and the error naming its file); the run goes on with the rest.
    pub fn load_clips<'a>(
        &self,
        ds: &crate::dataset::Dataset,
        clips: impl IntoIterator<Item = &'a crate::manifest::ClipRecord>,
        spec: &FrameSpec,
        patch: &PatchSpec,
        with_audio: bool,
    ) -> LoadedClips<'a> {
        let mut out = LoadedClips {
            clips: Vec::new(),
            skipped: Vec::new(),
            cache_hits: 0,
        };
        for clip in clips {
            let path = ds.video_path(clip);
            match self.get_or_decode(&path, spec, patch, with_audio && clip.audio.is_some()) {
                Ok((c, lookup)) => {
                    out.cache_hits += usize::from(lookup == Lookup::Hit);
                    out.clips.push((clip, c));
                }
                Err(e) => out.skipped.push((clip.id.clone(), e.to_string())),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::{FrameSampling, PixelNorm};

    #[test]
    fn key_changes_with_the_families_normalisation_and_sampling() {
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("clip.mp4");
        std::fs::write(&clip, b"not decoded here").unwrap();
        let cache = DecodeCache::new(dir.path().join("cache"));
        let spec = FrameSpec::default();
        let qwen25 = PatchSpec::default();
        let key = |p: &PatchSpec| cache.key(&clip, &spec, p, false).unwrap();
        let norm_only = PatchSpec {
            norm: PixelNorm::Half,
            ..qwen25
        };
        let sampling_only = PatchSpec {
            sampling: FrameSampling::Qwen3Vl,
            ..qwen25
        };
        assert_ne!(key(&qwen25), key(&norm_only));
        assert_ne!(key(&qwen25), key(&sampling_only));
        assert_eq!(key(&qwen25), key(&PatchSpec::default()));
    }

    #[test]
    fn entry_round_trips_the_source_frame_rate() {
        let clip = CachedClip {
            vision: VisionInput {
                pixel_values: vec![0.5; 2 * 3],
                row_len: 3,
                grid_thw: [1, 1, 2],
                second_per_grid: 0.9722222222222222,
                frame_indices: vec![0, 9, 18, 26, 35],
                video_fps: 432.0 / 35.0,
            },
            audio: None,
        };
        let back = decode_entry(&encode_entry(&clip).unwrap()).unwrap();
        assert_eq!(back, clip);
    }
}
