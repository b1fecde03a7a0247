//! GroupViT (Xu et al., CVPR 2022) in candle, module for module as transformers' `GroupViTModel`.

pub mod config;
pub mod encoder;
pub mod linear;
pub mod projection;
pub mod text;
pub mod vision;

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;

pub use config::{GroupViTConfig, TextConfig, VisionConfig};
use projection::ProjectionHead;
use text::TextTransformer;
use crate::checkpoint::weights::Weights;
use vision::VisionTransformer;

use crate::error::{Error, Result};
use crate::resample;

/// A module built by `build` over variables drawn at random (N(0, 0.5²), layer norms included),
/// and its variables. Built twice: once to create the variables, and again once they are random,
/// since weights packed at load (where the CPU has the packed kernels) are copies.
#[cfg(test)]
pub(crate) fn with_random_vars<T>(build: impl Fn(VarBuilder) -> candle_core::Result<T>) -> candle_core::Result<(T, candle_nn::VarMap)> {
    let (vars, dev) = (candle_nn::VarMap::new(), candle_core::Device::Cpu);
    build(VarBuilder::from_varmap(&vars, candle_core::DType::F32, &dev))?;
    for var in vars.all_vars() {
        var.set(&Tensor::randn(0f32, 0.5, var.shape(), &dev)?)?;
    }
    Ok((build(VarBuilder::from_varmap(&vars, candle_core::DType::F32, &dev))?, vars))
}

/// What the image side yields for segmentation and classification.
pub struct ImageFeatures {
    /// Projected whole-image embeddings `(B, projection_dim)`, not normalised.
    pub image_embeds: Tensor,
    /// Projected embedding of each final group `(B, groups, projection_dim)`, not normalised.
    pub group_embeds: Tensor,
    /// Soft assignment of each grouping block, `(B, groups_out, tokens_in)`.
    pub assignments: Vec<Tensor>,
    /// Patch grid `(rows, cols)`.
    pub grid: (usize, usize),
}

impl ImageFeatures {
    /// The features of several batches as one, in order.
    pub fn cat(parts: &[ImageFeatures]) -> Result<Self> {
        let first = parts.first().ok_or_else(|| Error::InvalidInput("no image features to join".into()))?;
        let cat = |f: &dyn Fn(&ImageFeatures) -> &Tensor| -> Result<Tensor> {
            Ok(Tensor::cat(&parts.iter().map(f).collect::<Vec<_>>(), 0)?)
        };
        let assignments = (0..first.assignments.len())
            .map(|k| cat(&|p: &ImageFeatures| &p.assignments[k]))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            image_embeds: cat(&|p| &p.image_embeds)?,
            group_embeds: cat(&|p| &p.group_embeds)?,
            assignments,
            grid: first.grid,
        })
    }
}

/// transformers' `GroupViTModel.forward(..., output_segmentation=True)` outputs.
pub struct GroupViTOutput {
    pub logits_per_image: Tensor,
    /// L2-normalised.
    pub text_embeds: Tensor,
    /// L2-normalised.
    pub image_embeds: Tensor,
    /// `(B, T, H, W)` at the input's resolution.
    pub segmentation_logits: Tensor,
    pub assignments: Vec<Tensor>,
}

/// `get_text_features`: `text_model` pooled, then `text_projection`.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    text_model: TextTransformer,
    text_projection: ProjectionHead,
}

impl TextEncoder {
    pub fn new(vb: VarBuilder, config: &GroupViTConfig) -> Result<Self> {
        Self::leaving_token_table(vb, config, None)
    }

    /// As [`new`](Self::new), leaving the token table in `file` (the weights `vb` reads) when it is
    /// a safetensors file: [`token_rows`](Self::token_rows) says which rows a prompt still needs.
    pub fn leaving_token_table(vb: VarBuilder, config: &GroupViTConfig, file: Option<&Weights>) -> Result<Self> {
        let t = &config.text_config;
        let (inter, proj) = (config.projection_intermediate_dim, config.projection_dim);
        Ok(Self {
            text_model: TextTransformer::new(vb.pp("text_model"), t, file).map_err(weights_error)?,
            text_projection: ProjectionHead::new(vb.pp("text_projection"), t.hidden_size, inter, proj)
                .map_err(weights_error)?,
        })
    }

    /// Projected, not normalised, `(T, projection_dim)`.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        Ok(crate::cpu::on_pool(|| self.text_projection.forward(&self.text_model.forward(input_ids)?))?)
    }

    /// The token table's rows, when the table stayed in the weights file.
    pub fn token_rows(&self) -> Option<&crate::checkpoint::token_rows::TokenRows> {
        self.text_model.token_rows()
    }

    /// Text positions the model has (77 for CLIP-style checkpoints).
    pub fn context_length(&self) -> usize {
        self.text_model.context_length()
    }
}

/// `get_image_features` and the groups: `vision_model`, then `visual_projection` of the pooled
/// embedding and of every final group.
#[derive(Debug, Clone)]
pub struct ImageEncoder {
    pub(crate) vision_model: VisionTransformer,
    pub(crate) visual_projection: ProjectionHead,
}

impl ImageEncoder {
    pub fn new(vb: VarBuilder, config: &GroupViTConfig) -> Result<Self> {
        let v = &config.vision_config;
        let (inter, proj) = (config.projection_intermediate_dim, config.projection_dim);
        Ok(Self {
            vision_model: VisionTransformer::new(vb.pp("vision_model"), v).map_err(weights_error)?,
            visual_projection: ProjectionHead::new(vb.pp("visual_projection"), v.hidden_size, inter, proj)
                .map_err(weights_error)?,
        })
    }

    /// The vision tower alone (`vision_model`).
    pub fn vision_model(&self) -> &VisionTransformer {
        &self.vision_model
    }

    /// Runs the vision tower and projects both the pooled embedding and every group (the pixels
    /// are freed once cut into patches).
    pub fn forward(&self, pixel_values: Tensor) -> Result<ImageFeatures> {
        crate::cpu::on_pool(|| self.project(self.vision_model.forward(pixel_values)?))
    }

    /// Projects a vision tower's output (this one's, or its GPU twin's).
    pub fn project(&self, out: vision::VisionOutput) -> Result<ImageFeatures> {
        project(&self.visual_projection, out)
    }
}

/// `visual_projection` of a vision tower's pooled output and of each of its final groups.
pub fn project(visual_projection: &ProjectionHead, out: vision::VisionOutput) -> Result<ImageFeatures> {
    let (b, g, h) = out.last_hidden_state.dims3()?;
    let groups = visual_projection.forward(&out.last_hidden_state.reshape((b * g, h))?)?;
    Ok(ImageFeatures {
        image_embeds: visual_projection.forward(&out.pooled)?,
        group_embeds: groups.reshape((b, g, ()))?,
        assignments: out.assignments,
        grid: out.grid,
    })
}

fn weights_error(e: candle_core::Error) -> Error {
    Error::Weights(e.to_string())
}

/// `exp(logit_scale)`, the contrastive temperature, as the checkpoint stores it.
pub fn logit_scale(vb: &VarBuilder) -> Result<f32> {
    Ok(vb.get((), "logit_scale").and_then(|s| s.to_scalar::<f32>()).map_err(weights_error)?.exp())
}

/// `GroupViTModel`: both encoders and the temperature.
#[derive(Debug, Clone)]
pub struct GroupViTModel {
    pub text: TextEncoder,
    pub image: ImageEncoder,
    logit_scale: f32,
    config: GroupViTConfig,
}

impl GroupViTModel {
    pub fn new(vb: VarBuilder, config: &GroupViTConfig) -> Result<Self> {
        Ok(Self {
            text: TextEncoder::new(vb.clone(), config)?,
            image: ImageEncoder::new(vb.clone(), config)?,
            logit_scale: logit_scale(&vb)?,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &GroupViTConfig {
        &self.config
    }

    /// `exp(logit_scale)`, the contrastive temperature.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// The whole forward as transformers computes it with `output_segmentation=True`.
    pub fn forward(&self, input_ids: &Tensor, pixel_values: &Tensor) -> Result<GroupViTOutput> {
        let (_, _, height, width) = pixel_values.dims4()?;
        let image = self.image.forward(pixel_values.clone())?;
        let text_embeds = l2_normalize(&self.text.forward(input_ids)?)?;
        let image_embeds = l2_normalize(&image.image_embeds)?;
        let scale = self.logit_scale() as f64;
        let logits_per_image = (image_embeds.matmul(&text_embeds.t()?)? * scale)?;
        let segmentation_logits =
            segmentation_logits(&image.group_embeds, &image.assignments, &text_embeds, scale, (height, width))?;
        Ok(GroupViTOutput {
            logits_per_image,
            text_embeds,
            image_embeds,
            segmentation_logits,
            assignments: image.assignments,
        })
    }
}

pub fn l2_normalize(xs: &Tensor) -> candle_core::Result<Tensor> {
    xs.broadcast_div(&xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}

/// Chains the grouping blocks' soft maps: `(B, final groups, image tokens)` — how much of each patch
/// ends up in each final group.
pub fn chain_assignments(assignments: &[Tensor]) -> candle_core::Result<Tensor> {
    let mut chained: Option<Tensor> = None;
    for a in assignments {
        let a_t = a.transpose(1, 2)?.contiguous()?;
        chained = Some(match chained {
            None => a_t,
            Some(prev) => prev.matmul(&a_t)?,
        });
    }
    match chained {
        Some(c) => c.transpose(1, 2)?.contiguous(),
        None => candle_core::bail!("the model has no grouping block"),
    }
}

/// transformers' `resize_attention_map` recovers the feature grid from the token count and the
/// output size rather than from the patch grid; it is reproduced here so raw logits match it exactly.
fn feature_grid(height: usize, width: usize, tokens: usize) -> candle_core::Result<(usize, usize)> {
    let scale = ((height * width / tokens) as f64).sqrt();
    let (fh, fw) = if height > width {
        let fw = (width as f64 / scale).round() as usize;
        (tokens / fw.max(1), fw)
    } else {
        let fh = (height as f64 / scale).round() as usize;
        (fh, tokens / fh.max(1))
    };
    if fh * fw != tokens {
        candle_core::bail!("cannot lay {tokens} tokens out on a grid for a {height}×{width} input");
    }
    Ok((fh, fw))
}

/// transformers' `segmentation_logits`: group–text cosine × scale, spread over the pixels by the
/// chained soft grouping (resized bilinearly), × scale again. `(B, T, H, W)`.
pub fn segmentation_logits(
    group_embeds: &Tensor,
    assignments: &[Tensor],
    text_embeds: &Tensor,
    scale: f64,
    (height, width): (usize, usize),
) -> Result<Tensor> {
    let grouping = chain_assignments(assignments)?;
    let (b, _, tokens) = grouping.dims3()?;
    let (fh, fw) = feature_grid(height, width, tokens)?;
    let per_group = (l2_normalize(group_embeds)?.broadcast_matmul(&text_embeds.t()?)? * scale)?;
    // Resizing is linear, so mixing groups into labels before resizing gives the same logits with
    // T instead of G planes to resize.
    let at_grid = (per_group.transpose(1, 2)?.contiguous()?.matmul(&grouping)? * scale)?;
    let t = at_grid.dim(1)?;
    let data = at_grid.flatten_all()?.to_vec1::<f32>()?;
    let resized = resample::bilinear(&data, b * t, fh, fw, height, width);
    Ok(Tensor::from_vec(resized, (b, t, height, width), group_embeds.device())?)
}
