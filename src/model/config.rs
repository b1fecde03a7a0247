//! `config.json` of a GroupViT checkpoint, with transformers' defaults (which are the
//! `nvidia/groupvit-gcc-*` shapes) for anything the file leaves out.

use serde::Deserialize;

pub use crate::cpu::activation::Activation;
use crate::error::{Error, Result};

/// `assign_mlp_ratio` is a pair (tokens, channels) or one number used for both.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Ratio {
    One(f64),
    Pair(Vec<f64>),
}

fn default_assign_ratio() -> Ratio {
    Ratio::Pair(vec![0.5, 4.0])
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 256,
            intermediate_size: 1024,
            num_hidden_layers: 12,
            num_attention_heads: 4,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            bos_token_id: Some(49406),
            eos_token_id: Some(49407),
            pad_token_id: Some(1),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub depths: Vec<usize>,
    pub num_group_tokens: Vec<usize>,
    pub num_output_groups: Vec<usize>,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub assign_eps: f64,
    #[serde(default = "default_assign_ratio")]
    assign_mlp_ratio: Ratio,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 384,
            intermediate_size: 1536,
            depths: vec![6, 3, 3],
            num_group_tokens: vec![64, 8, 0],
            num_output_groups: vec![64, 8, 8],
            num_attention_heads: 6,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
            assign_eps: 1.0,
            assign_mlp_ratio: default_assign_ratio(),
        }
    }
}

impl VisionConfig {
    /// Hidden sizes of the grouping block's token-mixing and channel MLPs.
    pub fn assign_mlp_dims(&self) -> (usize, usize) {
        let (t, c) = match &self.assign_mlp_ratio {
            Ratio::One(r) => (*r, *r),
            Ratio::Pair(v) => (v.first().copied().unwrap_or(0.5), v.get(1).copied().unwrap_or(4.0)),
        };
        // transformers: `int(x * hidden_size)`, i.e. truncation.
        ((t * self.hidden_size as f64) as usize, (c * self.hidden_size as f64) as usize)
    }

    /// Number of patches along each side of the square grid the position embeddings were learnt on.
    pub fn position_grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct GroupViTConfig {
    #[serde(default)]
    pub text_config: TextConfig,
    #[serde(default)]
    pub vision_config: VisionConfig,
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    #[serde(default = "default_projection_intermediate_dim")]
    pub projection_intermediate_dim: usize,
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init_value: f64,
    /// groupseg's own optional `segmentation` section: the settings a model was made for (our
    /// shapes demo has it; the published checkpoints do not, and get the official ones).
    #[serde(default)]
    pub segmentation: SegmentationSection,
}

/// The `segmentation` section of a config, as written; `crate::segment` lays it over the official
/// settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationSection {
    pub short_side: Option<u32>,
    pub window: Option<usize>,
    pub stride: Option<usize>,
    /// A group whose best label scores under this is background (0–1), without refinement.
    pub background_threshold: Option<f32>,
    /// A pixel whose best refined score is under this is background (0–1), with refinement.
    pub refined_background_threshold: Option<f32>,
    /// Whether labels are refined over the photo's colours by default.
    pub refine: Option<bool>,
}

fn default_projection_dim() -> usize {
    256
}
fn default_projection_intermediate_dim() -> usize {
    4096
}
fn default_logit_scale() -> f64 {
    2.6592
}

impl GroupViTConfig {
    /// Parses a checkpoint's `config.json`. Early hub configs carry `text_config_dict` /
    /// `vision_config_dict`; as in transformers, their keys win over `text_config` / `vision_config`.
    pub fn from_json(json: &str) -> Result<Self> {
        let mut value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::Config(e.to_string()))?;
        if let Some(obj) = value.as_object_mut() {
            for tower in ["text", "vision"] {
                let dict_key = format!("{tower}_config_dict");
                let key = format!("{tower}_config");
                if let Some(serde_json::Value::Object(overrides)) = obj.remove(&dict_key) {
                    let entry = obj.entry(key).or_insert_with(|| serde_json::json!({}));
                    if let Some(base) = entry.as_object_mut() {
                        for (k, v) in overrides {
                            base.insert(k, v);
                        }
                    }
                }
            }
        }
        let cfg: Self = serde_json::from_value(value).map_err(|e| Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let v = &self.vision_config;
        let bad = |m: String| Err(Error::Config(m));
        if v.depths.is_empty()
            || v.depths.len() != v.num_group_tokens.len()
            || v.depths.len() != v.num_output_groups.len()
        {
            return bad(format!(
                "vision_config.depths, num_group_tokens and num_output_groups must have one entry per stage (got {}, {}, {})",
                v.depths.len(),
                v.num_group_tokens.len(),
                v.num_output_groups.len()
            ));
        }
        if v.num_group_tokens.first() == Some(&0) {
            return bad("the first vision stage must have group tokens".into());
        }
        let seg = &self.segmentation;
        if seg.short_side == Some(0) || seg.window == Some(0) || seg.stride == Some(0) {
            return bad("segmentation: short_side, window and stride must be positive".into());
        }
        for (name, t) in [("background_threshold", seg.background_threshold), ("refined_background_threshold", seg.refined_background_threshold)] {
            if let Some(t) = t.filter(|t| !(0.0..=1.0).contains(t)) {
                return bad(format!("segmentation: {name} {t} is not between 0 and 1"));
            }
        }
        if v.patch_size == 0 || v.image_size < v.patch_size {
            return bad(format!("patch_size {} does not fit image_size {}", v.patch_size, v.image_size));
        }
        for (name, hidden, heads) in [
            ("vision", v.hidden_size, v.num_attention_heads),
            ("text", self.text_config.hidden_size, self.text_config.num_attention_heads),
        ] {
            if heads == 0 || hidden % heads != 0 {
                return bad(format!("{name} hidden_size {hidden} is not divisible by num_attention_heads {heads}"));
            }
        }
        Ok(())
    }
}
