//! GroupViT's image encoder: a ViT whose stages carry learnable group tokens, each stage ending in a
//! grouping block that assigns image tokens to groups (64, then 8 in the published checkpoints).
//! One struct per transformers module; field and parameter names are the checkpoint's.

use candle_core::{DType, IndexOp, Module, Result, Tensor, D};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use super::config::{Activation, VisionConfig};
use crate::cpu;
use super::encoder::{Attention, EncoderLayer, Mlp};
use super::linear::Linear;
use crate::cpu::matrix::Matrix;
use crate::resample;

/// `GroupViTMixerMLP`: the MLP applied across tokens rather than channels (it maps G groups to G').
#[derive(Debug, Clone)]
pub struct MixerMlp(pub(crate) Mlp);

impl MixerMlp {
    pub fn new(vb: VarBuilder, act: Activation, tokens_in: usize, hidden: usize, tokens_out: usize) -> Result<Self> {
        Ok(Self(Mlp::new(vb, act, tokens_in, hidden, tokens_out)?))
    }
}

impl Module for MixerMlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.0.forward(&xs.transpose(1, 2)?.contiguous()?)?.transpose(1, 2)?.contiguous()
    }
}

/// Patches unfolded and embedded at a time by [`PatchEmbeddings::forward`] (whole rows of them).
const PATCH_BAND_TOKENS: usize = 128;

/// `GroupViTPatchEmbeddings`: a stride-`patch` convolution, computed as one matmul over unfolded patches.
#[derive(Debug, Clone)]
pub struct PatchEmbeddings {
    /// The convolution as a linear layer over flattened `(channels, patch, patch)` patches.
    pub(crate) projection: Linear,
    pub(crate) patch: usize,
}

impl PatchEmbeddings {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let (h, c, p) = (cfg.hidden_size, cfg.num_channels, cfg.patch_size);
        let vb = vb.pp("projection");
        let projection = Linear::from_parts(Matrix::load(&vb, (h, c, p, p), "weight")?, vb.get(h, "bias")?);
        Ok(Self { projection, patch: p })
    }

    /// `(B, C, H, W)` to `(B, gh·gw, hidden)`, a band of patch rows at a time: all unfolded at
    /// once, the patches are a second copy of the pixels (2.4 MB for a 448-pixel window). Takes
    /// the pixels, freed once embedded.
    pub fn forward(&self, pixel_values: Tensor) -> Result<(Tensor, (usize, usize))> {
        let (b, _, h, w) = pixel_values.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        if gh == 0 || gw == 0 {
            candle_core::bail!("an input of {h}×{w} pixels is smaller than one {p}×{p} patch");
        }
        let band = (PATCH_BAND_TOKENS / gw).max(1);
        let (hidden, _) = self.projection.weight().dims()?;
        let out = Tensor::zeros((b * gh * gw, hidden), pixel_values.dtype(), pixel_values.device())?;
        for bi in 0..b {
            for r0 in (0..gh).step_by(band) {
                let rows = band.min(gh - r0);
                let strip = pixel_values.narrow(0, bi, 1)?.narrow(2, r0 * p, rows * p)?;
                let (patches, _) = unfold_patches(&strip, p)?;
                out.slice_set(&self.projection.forward(&patches)?, 0, (bi * gh + r0) * gw)?;
            }
        }
        Ok((out.reshape((b, gh * gw, hidden))?, (gh, gw)))
    }
}

/// The patches of `(B, C, H, W)` as rows `(B·gh·gw, C·p·p)`, in the convolution kernel's order;
/// like the convolution, rows and columns that do not fill a whole patch are dropped.
pub fn unfold_patches(pixel_values: &Tensor, p: usize) -> Result<(Tensor, (usize, usize))> {
    let (b, c, h, w) = pixel_values.dims4()?;
    let (gh, gw) = (h / p, w / p);
    if gh == 0 || gw == 0 {
        candle_core::bail!("an input of {h}×{w} pixels is smaller than one {p}×{p} patch");
    }
    let patches = pixel_values
        .narrow(2, 0, gh * p)?
        .narrow(3, 0, gw * p)?
        .contiguous()?
        .reshape((b, c, gh, p, gw, p))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?
        .reshape((b * gh * gw, c * p * p))?;
    Ok((patches, (gh, gw)))
}

/// `GroupViTVisionEmbeddings`: patches, LayerNorm, then position embeddings (bicubically resized
/// when the patch grid differs from the one they were learnt on).
#[derive(Debug, Clone)]
pub struct VisionEmbeddings {
    pub(crate) patch_embeddings: PatchEmbeddings,
    pub(crate) position_embeddings: Tensor,
    pub(crate) layernorm: LayerNorm,
    pub(crate) grid: usize,
}

impl VisionEmbeddings {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let grid = cfg.position_grid();
        Ok(Self {
            patch_embeddings: PatchEmbeddings::new(vb.pp("patch_embeddings"), cfg)?,
            position_embeddings: vb.get((1, grid * grid, cfg.hidden_size), "position_embeddings")?,
            layernorm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("layernorm"))?,
            grid,
        })
    }

    pub fn forward(&self, pixel_values: Tensor) -> Result<(Tensor, (usize, usize))> {
        let (_, _, h, w) = pixel_values.dims4()?;
        let (patches, (gh, gw)) = self.patch_embeddings.forward(pixel_values)?;
        let embeddings = cpu::layer_norm(&patches, &self.layernorm)?;
        let pos = position_embeddings_for(&self.position_embeddings, self.grid, (gh, gw), h == w)?;
        // Our add, on our pool: candle's broadcast add of this size runs on a pool of its own, whose
        // thread then spins on one of the cores the first layers need (7 % of a 224 forward, Zen 5).
        let pos = pos.broadcast_as(embeddings.shape())?.contiguous()?;
        Ok((cpu::add_residual(embeddings, &pos)?, (gh, gw)))
    }
}

/// transformers' `interpolate_pos_encoding` of a `(1, grid², hidden)` table for a `gh × gw` patch
/// grid, including its shortcut for square inputs of the training size.
pub fn position_embeddings_for(table: &Tensor, grid: usize, (gh, gw): (usize, usize), square: bool) -> Result<Tensor> {
    if gh * gw == grid * grid && square {
        return Ok(table.clone());
    }
    let dim = table.dim(D::Minus1)?;
    let values = table.flatten_all()?.to_vec1::<f32>()?;
    let resized = resample::bicubic_channels_last(&values, grid, grid, dim, gh, gw);
    Tensor::from_vec(resized, (1, gh * gw, dim), table.device())
}

/// `GroupViTCrossAttentionLayer`: group tokens attend to image tokens before assignment.
#[derive(Debug, Clone)]
pub struct CrossAttentionLayer {
    pub(crate) attn: Attention,
    pub(crate) norm2: LayerNorm,
    pub(crate) mlp: Mlp,
    pub(crate) norm_post: LayerNorm,
}

impl CrossAttentionLayer {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            attn: Attention::new(vb.pp("attn"), h, cfg.num_attention_heads)?,
            norm2: layer_norm(h, cfg.layer_norm_eps, vb.pp("norm2"))?,
            mlp: Mlp::new(vb.pp("mlp"), cfg.hidden_act, h, cfg.intermediate_size, h)?,
            norm_post: layer_norm(h, cfg.layer_norm_eps, vb.pp("norm_post"))?,
        })
    }

    pub fn forward(&self, query: &Tensor, key: &Tensor) -> Result<Tensor> {
        let x = (query + self.attn.forward(query, Some(key))?)?;
        let x = (&x + self.mlp.forward(&self.norm2.forward(&x)?)?)?;
        self.norm_post.forward(&x)
    }
}

/// Image tokens per block of [`AssignAttention::forward`].
const ASSIGN_TOKENS: usize = 128;

/// `GroupViTAssignAttention`: the assignment. Each image token goes to its best group (hard argmax
/// over groups at inference); each group takes the normalised sum of its tokens. Also returns the
/// soft assignment (softmax over groups) that segmentation multiplies across stages.
#[derive(Debug, Clone)]
pub struct AssignAttention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) proj: Linear,
    pub(crate) scale: f64,
    pub(crate) assign_eps: f64,
}

impl AssignAttention {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            q_proj: Linear::new(vb.pp("q_proj"), h, h)?,
            k_proj: Linear::new(vb.pp("k_proj"), h, h)?,
            v_proj: Linear::new(vb.pp("v_proj"), h, h)?,
            proj: Linear::new(vb.pp("proj"), h, h)?,
            scale: (h as f64).powf(-0.5),
            assign_eps: cfg.assign_eps,
        })
    }

    /// `groups (B, G, D)`, `tokens (B, N, D)` → (new group features `(B, G, D)`, soft map `(B, G, N)`).
    ///
    /// The softmax runs over groups, so each image token's assignment stands alone: keys and values
    /// are made [`ASSIGN_TOKENS`] tokens at a time (whole, each is a copy of every token's width,
    /// 1.2 MB at 448 pixels), and each group's sum of its tokens' values is divided by its count
    /// (plus `assign_eps`) once all are in, which is `attn · v` with `attn = hard / (Σ hard + eps)`.
    pub fn forward(&self, groups: &Tensor, tokens: &Tensor) -> Result<(Tensor, Tensor)> {
        let q = self.q_proj.forward(groups)?;
        let (n, num_groups) = (tokens.dim(1)?, q.dim(1)?);
        let ids = Tensor::arange(0u32, num_groups as u32, q.device())?.reshape((1, num_groups, 1))?;
        let mut soft = Vec::with_capacity(n.div_ceil(ASSIGN_TOKENS));
        let mut taken: Option<(Tensor, Tensor)> = None;
        for t0 in (0..n).step_by(ASSIGN_TOKENS) {
            let block = tokens.narrow(1, t0, ASSIGN_TOKENS.min(n - t0))?;
            let raw = (cpu::matmul(&q, &self.k_proj.forward(&block)?.t()?)? * self.scale)?;
            let part = candle_nn::ops::softmax(&raw, 1)?;
            let hard = part.argmax_keepdim(1)?.broadcast_eq(&ids)?.to_dtype(DType::F32)?;
            let (sum, count) = (cpu::matmul(&hard, &self.v_proj.forward(&block)?)?, hard.sum_keepdim(2)?);
            taken = Some(match taken {
                Some((s, c)) => ((s + sum)?, (c + count)?),
                None => (sum, count),
            });
            soft.push(part);
        }
        let Some((sum, count)) = taken else { candle_core::bail!("the assignment needs at least one image token") };
        let soft = Tensor::cat(&soft, 2)?;
        Ok((self.proj.forward(&sum.broadcast_div(&(count + self.assign_eps)?)?)?, soft))
    }
}

/// `GroupViTTokenAssign`: the grouping block. Group tokens are mixed into the stage's output groups,
/// attend to the image tokens, then take them over by assignment.
#[derive(Debug, Clone)]
pub struct TokenAssign {
    pub(crate) norm_tokens: LayerNorm,
    pub(crate) mlp_inter: MixerMlp,
    pub(crate) norm_post_tokens: LayerNorm,
    pub(crate) norm_x: LayerNorm,
    pub(crate) pre_assign_attn: CrossAttentionLayer,
    pub(crate) assign: AssignAttention,
    pub(crate) norm_new_x: LayerNorm,
    pub(crate) mlp_channels: Mlp,
}

impl TokenAssign {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig, num_group_token: usize, num_output_group: usize) -> Result<Self> {
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let (tokens_dim, channels_dim) = cfg.assign_mlp_dims();
        Ok(Self {
            norm_tokens: layer_norm(h, eps, vb.pp("norm_tokens"))?,
            mlp_inter: MixerMlp::new(vb.pp("mlp_inter"), cfg.hidden_act, num_group_token, tokens_dim, num_output_group)?,
            norm_post_tokens: layer_norm(h, eps, vb.pp("norm_post_tokens"))?,
            norm_x: layer_norm(h, eps, vb.pp("norm_x"))?,
            pre_assign_attn: CrossAttentionLayer::new(vb.pp("pre_assign_attn"), cfg)?,
            assign: AssignAttention::new(vb.pp("assign"), cfg)?,
            norm_new_x: layer_norm(h, eps, vb.pp("norm_new_x"))?,
            mlp_channels: Mlp::new(vb.pp("mlp_channels"), cfg.hidden_act, h, channels_dim, h)?,
        })
    }

    /// Takes the image tokens, freed once normalised.
    pub fn forward(&self, image_tokens: Tensor, group_tokens: &Tensor) -> Result<(Tensor, Tensor)> {
        let group_tokens = self.norm_tokens.forward(group_tokens)?;
        let image_tokens = {
            let normed = self.norm_x.forward(&image_tokens)?;
            drop(image_tokens);
            normed
        };
        let projected = self.norm_post_tokens.forward(&self.mlp_inter.forward(&group_tokens)?)?;
        let projected = self.pre_assign_attn.forward(&projected, &image_tokens)?;
        let (assigned, soft) = self.assign.forward(&projected, &image_tokens)?;
        let x = (assigned + projected)?;
        let x = (&x + self.mlp_channels.forward(&self.norm_new_x.forward(&x)?)?)?;
        Ok((x, soft))
    }
}

/// `group_projector`: carries the previous stage's group tokens into this stage's (LayerNorm, mixer MLP).
#[derive(Debug, Clone)]
pub struct GroupProjector {
    pub(crate) norm: LayerNorm,
    pub(crate) mixer: MixerMlp,
}

impl GroupProjector {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig, prev_groups: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("0"))?,
            mixer: MixerMlp::new(vb.pp("1"), cfg.hidden_act, prev_groups, cfg.hidden_size / 2, groups)?,
        })
    }
}

impl Module for GroupProjector {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.mixer.forward(&self.norm.forward(xs)?)
    }
}

/// What one stage hands on: image tokens (or groups), its group tokens, its soft assignment map.
pub struct StageOutput {
    pub tokens: Tensor,
    pub group_tokens: Option<Tensor>,
    pub assignment: Option<Tensor>,
}

/// `GroupViTStage`: transformer layers over [image tokens; group tokens], then a grouping block.
#[derive(Debug, Clone)]
pub struct Stage {
    pub(crate) group_token: Option<Tensor>,
    pub(crate) layers: Vec<EncoderLayer>,
    pub(crate) downsample: Option<TokenAssign>,
    pub(crate) group_projector: Option<GroupProjector>,
}

impl Stage {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig, index: usize) -> Result<Self> {
        let groups = cfg.num_group_tokens[index];
        let prev_groups = if index > 0 { cfg.num_output_groups[index - 1] } else { 0 };
        let layers = (0..cfg.depths[index])
            .map(|i| {
                let (h, heads, inter) = (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size);
                EncoderLayer::new(vb.pp("layers").pp(i), h, heads, inter, cfg.hidden_act, cfg.layer_norm_eps)
            })
            .collect::<Result<Vec<_>>>()?;
        let (group_token, downsample) = if groups > 0 {
            (
                Some(vb.get((1, groups, cfg.hidden_size), "group_token")?),
                Some(TokenAssign::new(vb.pp("downsample"), cfg, groups, cfg.num_output_groups[index])?),
            )
        } else {
            (None, None)
        };
        let group_projector = if prev_groups > 0 && groups > 0 {
            Some(GroupProjector::new(vb.pp("group_projector"), cfg, prev_groups, groups)?)
        } else {
            None
        };
        Ok(Self { group_token, layers, downsample, group_projector })
    }

    /// Takes the stage's input tokens, freed once joined with the group tokens.
    pub fn forward(&self, tokens: Tensor, prev_group_tokens: Option<&Tensor>) -> Result<StageOutput> {
        let batch = tokens.dim(0)?;
        let group_tokens = match &self.group_token {
            None => None,
            Some(g) => {
                let g = g.broadcast_as((batch, g.dim(1)?, g.dim(2)?))?;
                Some(match (&self.group_projector, prev_group_tokens) {
                    (Some(p), Some(prev)) => (p.forward(prev)? + g)?,
                    _ => g.contiguous()?,
                })
            }
        };
        let num_tokens = tokens.dim(1)?;
        let mut x = match &group_tokens {
            Some(g) => {
                let x = Tensor::cat(&[&tokens, g], 1)?;
                drop(tokens);
                x
            }
            None => tokens,
        };
        for layer in &self.layers {
            x = layer.forward(x)?;
        }
        let (tokens, group_tokens) = match group_tokens {
            // The group tokens copied out, so that `x` is freed with the image tokens (which may be
            // a view of it) once the grouping block has normalised them.
            Some(_) => {
                let parts = (x.i((.., ..num_tokens))?.contiguous()?, Some(x.i((.., num_tokens..))?.copy()?));
                drop(x);
                parts
            }
            None => (x, None),
        };
        match (&self.downsample, group_tokens) {
            (Some(assign), Some(g)) => {
                let (groups, soft) = assign.forward(tokens, &g)?;
                Ok(StageOutput { tokens: groups, group_tokens: Some(g), assignment: Some(soft) })
            }
            (_, g) => Ok(StageOutput { tokens, group_tokens: g, assignment: None }),
        }
    }
}

/// The vision tower's results.
pub struct VisionOutput {
    /// Final group features after LayerNorm, `(B, groups, hidden)`.
    pub last_hidden_state: Tensor,
    /// Mean over groups, `(B, hidden)`.
    pub pooled: Tensor,
    /// Each grouping block's soft assignment, `(B, groups_out, tokens_in)`.
    pub assignments: Vec<Tensor>,
    /// Patch grid `(rows, cols)` of the input.
    pub grid: (usize, usize),
}

/// `GroupViTVisionTransformer`.
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    pub(crate) embeddings: VisionEmbeddings,
    pub(crate) stages: Vec<Stage>,
    pub(crate) layernorm: LayerNorm,
}

impl VisionTransformer {
    pub fn new(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let stages_vb = vb.pp("encoder").pp("stages");
        let stages = (0..cfg.depths.len())
            .map(|i| Stage::new(stages_vb.pp(i), cfg, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: VisionEmbeddings::new(vb.pp("embeddings"), cfg)?,
            stages,
            layernorm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("layernorm"))?,
        })
    }

    /// Takes the pixels: a 448-pixel window's are 2.4 MB, not needed past the patch embeddings.
    pub fn forward(&self, pixel_values: Tensor) -> Result<VisionOutput> {
        let (mut tokens, grid) = self.embeddings.forward(pixel_values)?;
        let mut group_tokens: Option<Tensor> = None;
        let mut assignments = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let out = stage.forward(tokens, group_tokens.as_ref())?;
            tokens = out.tokens;
            group_tokens = out.group_tokens;
            assignments.extend(out.assignment);
        }
        let last_hidden_state = self.layernorm.forward(&tokens)?;
        let pooled = last_hidden_state.mean(1)?;
        Ok(VisionOutput { last_hidden_state, pooled, assignments, grid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::with_random_vars;
    use candle_core::Device;

    /// transformers' `GroupViTAssignAttention` at inference (hard assignment) over every image token
    /// at once: the blocks must give what it gives.
    fn assign_at_once(a: &AssignAttention, groups: &Tensor, tokens: &Tensor) -> Result<(Tensor, Tensor)> {
        let raw = (a.q_proj.forward(groups)?.matmul(&a.k_proj.forward(tokens)?.t()?)? * a.scale)?;
        let soft = candle_nn::ops::softmax(&raw, 1)?;
        let g = soft.dim(1)?;
        let ids = Tensor::arange(0u32, g as u32, soft.device())?.reshape((1, g, 1))?;
        let hard = soft.argmax_keepdim(1)?.broadcast_eq(&ids)?.to_dtype(DType::F32)?;
        let attn = hard.broadcast_div(&(hard.sum_keepdim(2)? + a.assign_eps)?)?;
        Ok((a.proj.forward(&attn.matmul(&a.v_proj.forward(tokens)?)?)?, soft))
    }

    /// Two images of 70 × 90 pixels in 4-pixel patches: 17 × 22 patches, embedded in bands of 5
    /// patch rows (the last of 2), and pixels past the last whole patch, which the convolution drops.
    #[test]
    fn patch_embeddings_by_bands_are_the_convolution() -> Result<()> {
        let dev = Device::Cpu;
        let mut cfg = VisionConfig::default();
        (cfg.hidden_size, cfg.patch_size, cfg.num_channels) = (24, 4, 3);
        let (embeddings, vars) = with_random_vars(|vb| PatchEmbeddings::new(vb, &cfg))?;
        let (weight, bias) = {
            let data = vars.data().lock().expect("variables");
            (data["projection.weight"].as_tensor().clone(), data["projection.bias"].as_tensor().clone())
        };
        let pixels = Tensor::randn(0f32, 1.0, (2, 3, 70, 90), &dev)?;
        let conv = pixels.conv2d(&weight, 0, 4, 1, 1)?.broadcast_add(&bias.reshape((1, 24, 1, 1))?)?;
        let expected = conv.flatten_from(2)?.transpose(1, 2)?;
        let (out, grid) = embeddings.forward(pixels)?;
        assert_eq!(grid, (17, 22));
        assert_eq!(out.dims(), &[2, 17 * 22, 24]);
        let diff = (out - expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max |diff| {diff:e}");
        Ok(())
    }

    /// Two images, more tokens than two blocks and a remainder.
    #[test]
    fn the_assignment_by_blocks_of_tokens_is_the_assignment_at_once() -> Result<()> {
        let dev = Device::Cpu;
        let mut cfg = VisionConfig::default();
        cfg.hidden_size = 32;
        let (assign, _) = with_random_vars(|vb| AssignAttention::new(vb, &cfg))?;
        let n = 2 * ASSIGN_TOKENS + 37;
        let tokens = Tensor::randn(0f32, 1.0, (2, n, 32), &dev)?;
        let groups = Tensor::randn(0f32, 1.0, (2, 8, 32), &dev)?;
        let (blocks, soft_blocks) = assign.forward(&groups, &tokens)?;
        let (whole, soft) = assign_at_once(&assign, &groups, &tokens)?;
        assert_eq!(soft_blocks.dims(), &[2, 8, n]);
        let diff = |a: &Tensor, b: &Tensor| -> Result<f32> { (a - b)?.abs()?.max_all()?.to_scalar::<f32>() };
        assert!(diff(&soft_blocks, &soft)? < 1e-6, "soft maps differ by {:e}", diff(&soft_blocks, &soft)?);
        assert!(diff(&blocks, &whole)? < 1e-5, "groups differ by {:e}", diff(&blocks, &whole)?);
        Ok(())
    }
}
