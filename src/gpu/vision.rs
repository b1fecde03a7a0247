//! GroupViT's vision tower on the GPU: one struct per `crate::model::vision` struct, each built from
//! its CPU twin (`from_cpu`, which uploads its weights) and recording its forward (`record`), so
//! checkpoint names live only in `crate::model`.

use candle_core::{DType, Tensor};

use super::buffer::GpuTensor;
use super::layers::{epilogue_of, LayerNorm, Linear};
use super::matmul::{BLayout, Epilogue, MatmulShape};
use super::recorder::Recorder;
use super::Gpu;
use crate::error::Result;
use crate::model::encoder;
use crate::model::vision::{self as cpu, position_embeddings_for, unfold_patches};

/// `GroupViTAttention`; the query scaling is folded into `q_proj`.
pub(crate) struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
}

impl Attention {
    fn from_cpu(gpu: &Gpu, a: &encoder::Attention) -> Result<Self> {
        Ok(Self {
            q_proj: Linear::scaled_from_cpu(gpu, &a.q_proj, a.scale)?,
            k_proj: Linear::from_cpu(gpu, &a.k_proj)?,
            v_proj: Linear::from_cpu(gpu, &a.v_proj)?,
            out_proj: Linear::from_cpu(gpu, &a.out_proj)?,
            num_heads: a.num_heads,
        })
    }

    /// `x (B, T, D)` attends to `context (B, S, D)` (itself when `None`).
    fn record(&self, r: &mut Recorder, x: &GpuTensor, context: Option<&GpuTensor>) -> Result<GpuTensor> {
        let ctx = context.unwrap_or(x);
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let s = ctx.shape[1];
        let (h, hd) = (self.num_heads, d / self.num_heads);
        let q = r.linear(x, &self.q_proj, Epilogue::Bias)?;
        let k = r.linear(ctx, &self.k_proj, Epilogue::Bias)?;
        let v = r.linear(ctx, &self.v_proj, Epilogue::Bias)?;
        let q = r.transpose(&q, (b, t, h, hd), &[b, h, t, hd])?;
        let k = r.transpose(&k, (b, s, h, hd), &[b, h, s, hd])?;
        let v = r.transpose(&v, (b, s, h, hd), &[b, h, s, hd])?;
        let mut scores = r.matmul(&q, &k, BLayout::Transposed, MatmulShape { batch: b * h, m: t, n: s, k: hd, b_shared: false })?;
        scores.shape = vec![b * h, t, s];
        r.softmax(&scores)?;
        let mixed = r.matmul(&scores, &v, BLayout::Plain, MatmulShape { batch: b * h, m: t, n: hd, k: s, b_shared: false })?;
        let merged = r.transpose(&mixed, (b, h, t, hd), &[b, t, d])?;
        r.linear(&merged, &self.out_proj, Epilogue::Bias)
    }
}

/// `GroupViTMLP`: fc1 with its activation fused, fc2.
pub(crate) struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Epilogue,
}

impl Mlp {
    fn from_cpu(gpu: &Gpu, m: &encoder::Mlp) -> Result<Self> {
        Ok(Self { fc1: Linear::from_cpu(gpu, &m.fc1)?, fc2: Linear::from_cpu(gpu, &m.fc2)?, act: epilogue_of(m.act)? })
    }

    fn record(&self, r: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let h = r.linear(x, &self.fc1, self.act)?;
        r.linear(&h, &self.fc2, Epilogue::Bias)
    }
}

/// `GroupViTMixerMLP`: the MLP across tokens, `(B, G, D)` → `(B, G', D)`.
pub(crate) struct MixerMlp(Mlp);

impl MixerMlp {
    fn from_cpu(gpu: &Gpu, m: &cpu::MixerMlp) -> Result<Self> {
        Ok(Self(Mlp::from_cpu(gpu, &m.0)?))
    }

    fn record(&self, r: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let (b, g, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let t = r.transpose(x, (b, g, d, 1), &[b, d, g])?;
        let h = self.0.record(r, &t)?;
        let g2 = h.shape[2];
        r.transpose(&h, (b, d, g2, 1), &[b, g2, d])
    }
}

/// `GroupViTEncoderLayer`: pre-norm transformer block.
pub(crate) struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    mlp: Mlp,
    layer_norm2: LayerNorm,
}

impl EncoderLayer {
    fn from_cpu(gpu: &Gpu, l: &encoder::EncoderLayer) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::from_cpu(gpu, &l.self_attn)?,
            layer_norm1: LayerNorm::from_cpu(gpu, &l.layer_norm1)?,
            mlp: Mlp::from_cpu(gpu, &l.mlp)?,
            layer_norm2: LayerNorm::from_cpu(gpu, &l.layer_norm2)?,
        })
    }

    fn record(&self, r: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let normed = r.layer_norm(x, &self.layer_norm1)?;
        let a = self.self_attn.record(r, &normed, None)?;
        let x = r.add(x, &a)?;
        let normed = r.layer_norm(&x, &self.layer_norm2)?;
        let m = self.mlp.record(r, &normed)?;
        r.add(&x, &m)
    }
}

/// `GroupViTVisionEmbeddings`: patches (the convolution as one matmul), LayerNorm, position
/// embeddings (resized on the CPU for the input's grid).
pub(crate) struct VisionEmbeddings {
    patch_embeddings: Linear,
    patch: usize,
    position_embeddings: Tensor,
    grid: usize,
    layernorm: LayerNorm,
}

impl VisionEmbeddings {
    fn from_cpu(gpu: &Gpu, e: &cpu::VisionEmbeddings) -> Result<Self> {
        Ok(Self {
            patch_embeddings: Linear::from_cpu(gpu, &e.patch_embeddings.projection)?,
            patch: e.patch_embeddings.patch,
            position_embeddings: e.position_embeddings.to_dtype(DType::F32)?,
            grid: e.grid,
            layernorm: LayerNorm::from_cpu(gpu, &e.layernorm)?,
        })
    }

    /// `(B, 3, H, W)` → `(B, gh·gw, D)` and the patch grid.
    fn record(&self, r: &mut Recorder, pixel_values: &Tensor) -> Result<(GpuTensor, (usize, usize))> {
        let (batch, _, height, width) = pixel_values.dims4()?;
        let (patches, (gh, gw)) = unfold_patches(pixel_values, self.patch)?;
        let pos = position_embeddings_for(&self.position_embeddings, self.grid, (gh, gw), height == width)?;
        let x = GpuTensor::from_tensor(r.gpu, &patches.reshape((batch, gh * gw, ()))?)?;
        let x = r.linear(&x, &self.patch_embeddings, Epilogue::Bias)?;
        let x = r.layer_norm(&x, &self.layernorm)?;
        Ok((r.add(&x, &GpuTensor::from_tensor(r.gpu, &pos)?)?, (gh, gw)))
    }
}

/// `GroupViTCrossAttentionLayer`: group tokens attend to image tokens before assignment.
pub(crate) struct CrossAttentionLayer {
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    norm_post: LayerNorm,
}

impl CrossAttentionLayer {
    fn from_cpu(gpu: &Gpu, l: &cpu::CrossAttentionLayer) -> Result<Self> {
        Ok(Self {
            attn: Attention::from_cpu(gpu, &l.attn)?,
            norm2: LayerNorm::from_cpu(gpu, &l.norm2)?,
            mlp: Mlp::from_cpu(gpu, &l.mlp)?,
            norm_post: LayerNorm::from_cpu(gpu, &l.norm_post)?,
        })
    }

    fn record(&self, r: &mut Recorder, query: &GpuTensor, key: &GpuTensor) -> Result<GpuTensor> {
        let a = self.attn.record(r, query, Some(key))?;
        let x = r.add(query, &a)?;
        let normed = r.layer_norm(&x, &self.norm2)?;
        let m = self.mlp.record(r, &normed)?;
        let x = r.add(&x, &m)?;
        r.layer_norm(&x, &self.norm_post)
    }
}

/// `GroupViTAssignAttention`: the assignment (see its CPU twin).
pub(crate) struct AssignAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    proj: Linear,
    assign_eps: f32,
}

impl AssignAttention {
    fn from_cpu(gpu: &Gpu, a: &cpu::AssignAttention) -> Result<Self> {
        Ok(Self {
            q_proj: Linear::scaled_from_cpu(gpu, &a.q_proj, a.scale)?,
            k_proj: Linear::from_cpu(gpu, &a.k_proj)?,
            v_proj: Linear::from_cpu(gpu, &a.v_proj)?,
            proj: Linear::from_cpu(gpu, &a.proj)?,
            assign_eps: a.assign_eps as f32,
        })
    }

    /// `groups (B, G, D)`, `tokens (B, N, D)` → (new group features, soft map `(B, G, N)`).
    fn record(&self, r: &mut Recorder, groups: &GpuTensor, tokens: &GpuTensor) -> Result<(GpuTensor, GpuTensor)> {
        let (b, g, d) = (groups.shape[0], groups.shape[1], groups.shape[2]);
        let n = tokens.shape[1];
        let q = r.linear(groups, &self.q_proj, Epilogue::Bias)?;
        let k = r.linear(tokens, &self.k_proj, Epilogue::Bias)?;
        let v = r.linear(tokens, &self.v_proj, Epilogue::Bias)?;
        let raw = r.matmul(&q, &k, BLayout::Transposed, MatmulShape { batch: b, m: g, n, k: d, b_shared: false })?;
        let (soft, hard) = r.assign(&raw, self.assign_eps)?;
        let pooled = r.matmul(&hard, &v, BLayout::Plain, MatmulShape { batch: b, m: g, n: d, k: n, b_shared: false })?;
        Ok((r.linear(&pooled, &self.proj, Epilogue::Bias)?, soft))
    }
}

/// `GroupViTTokenAssign`: the grouping block.
pub(crate) struct TokenAssign {
    norm_tokens: LayerNorm,
    mlp_inter: MixerMlp,
    norm_post_tokens: LayerNorm,
    norm_x: LayerNorm,
    pre_assign_attn: CrossAttentionLayer,
    assign: AssignAttention,
    norm_new_x: LayerNorm,
    mlp_channels: Mlp,
}

impl TokenAssign {
    fn from_cpu(gpu: &Gpu, t: &cpu::TokenAssign) -> Result<Self> {
        Ok(Self {
            norm_tokens: LayerNorm::from_cpu(gpu, &t.norm_tokens)?,
            mlp_inter: MixerMlp::from_cpu(gpu, &t.mlp_inter)?,
            norm_post_tokens: LayerNorm::from_cpu(gpu, &t.norm_post_tokens)?,
            norm_x: LayerNorm::from_cpu(gpu, &t.norm_x)?,
            pre_assign_attn: CrossAttentionLayer::from_cpu(gpu, &t.pre_assign_attn)?,
            assign: AssignAttention::from_cpu(gpu, &t.assign)?,
            norm_new_x: LayerNorm::from_cpu(gpu, &t.norm_new_x)?,
            mlp_channels: Mlp::from_cpu(gpu, &t.mlp_channels)?,
        })
    }

    /// → (the stage's output groups, the soft assignment).
    fn record(&self, r: &mut Recorder, image_tokens: &GpuTensor, group_tokens: &GpuTensor) -> Result<(GpuTensor, GpuTensor)> {
        let group_tokens = r.layer_norm(group_tokens, &self.norm_tokens)?;
        let image_tokens = r.layer_norm(image_tokens, &self.norm_x)?;
        let projected = self.mlp_inter.record(r, &group_tokens)?;
        let projected = r.layer_norm(&projected, &self.norm_post_tokens)?;
        let projected = self.pre_assign_attn.record(r, &projected, &image_tokens)?;
        let (assigned, soft) = self.assign.record(r, &projected, &image_tokens)?;
        let x = r.add(&assigned, &projected)?;
        let normed = r.layer_norm(&x, &self.norm_new_x)?;
        let m = self.mlp_channels.record(r, &normed)?;
        Ok((r.add(&x, &m)?, soft))
    }
}

/// `group_projector`: the previous stage's group tokens into this stage's.
pub(crate) struct GroupProjector {
    norm: LayerNorm,
    mixer: MixerMlp,
}

impl GroupProjector {
    fn from_cpu(gpu: &Gpu, p: &cpu::GroupProjector) -> Result<Self> {
        Ok(Self { norm: LayerNorm::from_cpu(gpu, &p.norm)?, mixer: MixerMlp::from_cpu(gpu, &p.mixer)? })
    }

    fn record(&self, r: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let normed = r.layer_norm(x, &self.norm)?;
        self.mixer.record(r, &normed)
    }
}

/// What one stage hands on (as `cpu::StageOutput`, without the group tokens' copy).
pub(crate) struct StageOutput {
    pub tokens: GpuTensor,
    pub group_tokens: Option<GpuTensor>,
    pub assignment: Option<GpuTensor>,
}

/// `GroupViTStage`: transformer layers over [image tokens; group tokens], then a grouping block.
pub(crate) struct Stage {
    group_token: Option<GpuTensor>,
    layers: Vec<EncoderLayer>,
    downsample: Option<TokenAssign>,
    group_projector: Option<GroupProjector>,
}

impl Stage {
    fn from_cpu(gpu: &Gpu, s: &cpu::Stage) -> Result<Self> {
        Ok(Self {
            group_token: s.group_token.as_ref().map(|t| GpuTensor::from_tensor(gpu, t)).transpose()?,
            layers: s.layers.iter().map(|l| EncoderLayer::from_cpu(gpu, l)).collect::<Result<_>>()?,
            downsample: s.downsample.as_ref().map(|d| TokenAssign::from_cpu(gpu, d)).transpose()?,
            group_projector: s.group_projector.as_ref().map(|p| GroupProjector::from_cpu(gpu, p)).transpose()?,
        })
    }

    fn record(&self, r: &mut Recorder, tokens: GpuTensor, prev_group_tokens: Option<&GpuTensor>) -> Result<StageOutput> {
        let batch = tokens.shape[0];
        let group_tokens = match (&self.group_token, &self.group_projector, prev_group_tokens) {
            (None, _, _) => None,
            (Some(g), Some(projector), Some(prev)) => {
                let projected = projector.record(r, prev)?;
                Some(r.add(&projected, g)?)
            }
            (Some(g), _, _) => Some(r.repeat(g, batch)?),
        };
        let num_tokens = tokens.shape[1];
        let mut x = match &group_tokens {
            Some(g) => r.concat(&tokens, g)?,
            None => tokens,
        };
        for layer in &self.layers {
            x = layer.record(r, &x)?;
        }
        let (tokens, group_tokens) = match group_tokens {
            Some(g) => {
                let (t, g) = r.split(&x, num_tokens, g.shape[1])?;
                (t, Some(g))
            }
            None => (x, None),
        };
        match (&self.downsample, group_tokens) {
            (Some(assign), Some(g)) => {
                let (groups, soft) = assign.record(r, &tokens, &g)?;
                Ok(StageOutput { tokens: groups, group_tokens: Some(g), assignment: Some(soft) })
            }
            (_, g) => Ok(StageOutput { tokens, group_tokens: g, assignment: None }),
        }
    }
}

/// What a recorded forward leaves on the GPU (`cpu::VisionOutput` without the pooled mean).
pub(crate) struct VisionOutput {
    /// `(B, groups, hidden)`, after the final LayerNorm.
    pub last_hidden_state: GpuTensor,
    /// Each grouping block's soft assignment `(B, groups_out, tokens_in)`.
    pub assignments: Vec<GpuTensor>,
    pub grid: (usize, usize),
}

/// `GroupViTVisionTransformer`.
pub(crate) struct VisionTransformer {
    embeddings: VisionEmbeddings,
    stages: Vec<Stage>,
    layernorm: LayerNorm,
}

impl VisionTransformer {
    pub fn from_cpu(gpu: &Gpu, v: &cpu::VisionTransformer) -> Result<Self> {
        Ok(Self {
            embeddings: VisionEmbeddings::from_cpu(gpu, &v.embeddings)?,
            stages: v.stages.iter().map(|s| Stage::from_cpu(gpu, s)).collect::<Result<_>>()?,
            layernorm: LayerNorm::from_cpu(gpu, &v.layernorm)?,
        })
    }

    /// Bytes it keeps in CPU memory: the position embeddings, resized there for each input size.
    pub fn host_bytes(&self) -> usize {
        let p = &self.embeddings.position_embeddings;
        p.elem_count() * p.dtype().size_in_bytes()
    }

    /// Records the forward of `pixel_values (B, 3, H, W)`.
    pub fn record(&self, r: &mut Recorder, pixel_values: &Tensor) -> Result<VisionOutput> {
        let (mut tokens, grid) = self.embeddings.record(r, pixel_values)?;
        let mut group_tokens: Option<GpuTensor> = None;
        let mut assignments = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let out = stage.record(r, tokens, group_tokens.as_ref())?;
            tokens = out.tokens;
            group_tokens = out.group_tokens;
            assignments.extend(out.assignment);
        }
        Ok(VisionOutput { last_hidden_state: r.layer_norm(&tokens, &self.layernorm)?, assignments, grid })
    }
}
