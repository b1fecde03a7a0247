//! GroupViT's image encoder on the GPU, module for module as `model::vision`, from the same
//! checkpoint names. Weights are uploaded once; a forward is recorded into one command buffer.
//! [`GpuImageEncoder::forward`] reads back the final groups and soft assignments as the same
//! [`VisionOutput`] the CPU tower returns (classification, raw logits); segmentation records on
//! past the encoder (`super::segment`) and reads back only the label map.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::buffer::GpuTensor;
use super::matmul::{BLayout, Epilogue, Matmul, MatmulShape};
use super::ops::Ops;
use super::rows::RowOps;
use super::segment::Compose;
use super::Gpu;
use crate::error::{Error, Result};
use crate::model::config::{Activation, VisionConfig};
use crate::model::vision::{position_embeddings_for, unfold_patches, VisionOutput};

fn get(vb: &VarBuilder, shape: &[usize], name: &str) -> Result<Tensor> {
    vb.get(shape, name).map_err(|e| Error::Weights(e.to_string()))
}

fn epilogue_of(act: Activation) -> Result<Epilogue> {
    match act {
        Activation::Gelu => Ok(Epilogue::BiasGeluErf),
        Activation::QuickGelu => Ok(Epilogue::BiasQuickGelu),
        Activation::Relu => Ok(Epilogue::BiasRelu),
        Activation::GeluTanh => Err(Error::Config("the GPU path has no tanh-GELU yet".into())),
    }
}

struct Linear {
    weight: GpuTensor,
    bias: GpuTensor,
    input: usize,
    output: usize,
}

impl Linear {
    fn from_parts(gpu: &Gpu, weight: &Tensor, bias: &Tensor) -> Result<Self> {
        let (output, input) = weight.dims2()?;
        Ok(Self { weight: GpuTensor::from_tensor(gpu, weight)?, bias: GpuTensor::from_tensor(gpu, bias)?, input, output })
    }

    /// `scale` multiplies the whole layer (attention folds its query scaling in here).
    fn new(gpu: &Gpu, vb: VarBuilder, input: usize, output: usize, scale: f64) -> Result<Self> {
        let w = get(&vb, &[output, input], "weight")?;
        let b = get(&vb, &[output], "bias")?;
        Ok(Self { weight: GpuTensor::from_tensor(gpu, &(w * scale)?)?, bias: GpuTensor::from_tensor(gpu, &(b * scale)?)?, input, output })
    }
}

struct LayerNorm {
    weight: GpuTensor,
    bias: GpuTensor,
    eps: f32,
}

impl LayerNorm {
    fn new(gpu: &Gpu, vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: GpuTensor::from_tensor(gpu, &get(&vb, &[dim], "weight")?)?,
            bias: GpuTensor::from_tensor(gpu, &get(&vb, &[dim], "bias")?)?,
            eps: eps as f32,
        })
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn new(gpu: &Gpu, vb: VarBuilder, hidden: usize, heads: usize) -> Result<Self> {
        let scale = ((hidden / heads) as f64).powf(-0.5);
        Ok(Self {
            q: Linear::new(gpu, vb.pp("q_proj"), hidden, hidden, scale)?,
            k: Linear::new(gpu, vb.pp("k_proj"), hidden, hidden, 1.0)?,
            v: Linear::new(gpu, vb.pp("v_proj"), hidden, hidden, 1.0)?,
            out: Linear::new(gpu, vb.pp("out_proj"), hidden, hidden, 1.0)?,
            heads,
        })
    }
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Epilogue,
}

impl Mlp {
    fn new(gpu: &Gpu, vb: VarBuilder, act: Activation, input: usize, hidden: usize, output: usize) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(gpu, vb.pp("fc1"), input, hidden, 1.0)?,
            fc2: Linear::new(gpu, vb.pp("fc2"), hidden, output, 1.0)?,
            act: epilogue_of(act)?,
        })
    }
}

struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

struct CrossAttentionLayer {
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
    norm_post: LayerNorm,
}

struct TokenAssign {
    norm_tokens: LayerNorm,
    mlp_inter: Mlp,
    norm_post_tokens: LayerNorm,
    norm_x: LayerNorm,
    pre_assign_attn: CrossAttentionLayer,
    q: Linear,
    k: Linear,
    v: Linear,
    proj: Linear,
    assign_eps: f32,
    norm_new_x: LayerNorm,
    mlp_channels: Mlp,
}

struct Stage {
    group_token: Option<GpuTensor>,
    layers: Vec<EncoderLayer>,
    downsample: Option<TokenAssign>,
    group_projector: Option<(LayerNorm, Mlp)>,
}

/// The compiled kernels a forward records.
pub struct Kernels {
    pub(crate) matmul: Matmul,
    pub(crate) rows: RowOps,
    pub(crate) ops: Ops,
    pub(crate) compose: Compose,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Self {
        Self { matmul: Matmul::new(gpu), rows: RowOps::new(gpu), ops: Ops::new(gpu), compose: Compose::new(gpu) }
    }
}

/// `GroupViTVisionTransformer` with its weights on the GPU.
pub struct GpuVisionTransformer {
    kernel: Linear,
    position_embeddings: Tensor,
    grid: usize,
    patch: usize,
    embed_norm: LayerNorm,
    stages: Vec<Stage>,
    final_norm: LayerNorm,
}

impl GpuVisionTransformer {
    /// Uploads the `vision_model` weights under `vb`.
    pub fn new(gpu: &Gpu, vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let (h, eps, act) = (cfg.hidden_size, cfg.layer_norm_eps, cfg.hidden_act);
        let ln = |vb: VarBuilder| LayerNorm::new(gpu, vb, h, eps);
        let attn = |vb: VarBuilder| Attention::new(gpu, vb, h, cfg.num_attention_heads);
        let emb = vb.pp("embeddings");
        let (c, p) = (cfg.num_channels, cfg.patch_size);
        let conv = emb.pp("patch_embeddings").pp("projection");
        let kernel = Linear {
            weight: GpuTensor::from_tensor(gpu, &get(&conv, &[h, c, p, p], "weight")?.reshape((h, c * p * p))?)?,
            bias: GpuTensor::from_tensor(gpu, &get(&conv, &[h], "bias")?)?,
            input: c * p * p,
            output: h,
        };
        let grid = cfg.position_grid();
        let (tokens_dim, channels_dim) = cfg.assign_mlp_dims();
        let mut stages = Vec::new();
        for i in 0..cfg.depths.len() {
            let svb = vb.pp("encoder").pp("stages").pp(i);
            let groups = cfg.num_group_tokens[i];
            let prev = if i > 0 { cfg.num_output_groups[i - 1] } else { 0 };
            let layers = (0..cfg.depths[i])
                .map(|j| {
                    let l = svb.pp("layers").pp(j);
                    Ok(EncoderLayer {
                        layer_norm1: ln(l.pp("layer_norm1"))?,
                        self_attn: attn(l.pp("self_attn"))?,
                        layer_norm2: ln(l.pp("layer_norm2"))?,
                        mlp: Mlp::new(gpu, l.pp("mlp"), act, h, cfg.intermediate_size, h)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let (group_token, downsample) = if groups > 0 {
                let d = svb.pp("downsample");
                let a = d.pp("assign");
                let pre = d.pp("pre_assign_attn");
                (
                    Some(GpuTensor::from_tensor(gpu, &get(&svb, &[1, groups, h], "group_token")?)?),
                    Some(TokenAssign {
                        norm_tokens: ln(d.pp("norm_tokens"))?,
                        mlp_inter: Mlp::new(gpu, d.pp("mlp_inter"), act, groups, tokens_dim, cfg.num_output_groups[i])?,
                        norm_post_tokens: ln(d.pp("norm_post_tokens"))?,
                        norm_x: ln(d.pp("norm_x"))?,
                        pre_assign_attn: CrossAttentionLayer {
                            attn: attn(pre.pp("attn"))?,
                            norm2: ln(pre.pp("norm2"))?,
                            mlp: Mlp::new(gpu, pre.pp("mlp"), act, h, cfg.intermediate_size, h)?,
                            norm_post: ln(pre.pp("norm_post"))?,
                        },
                        q: Linear::new(gpu, a.pp("q_proj"), h, h, (h as f64).powf(-0.5))?,
                        k: Linear::new(gpu, a.pp("k_proj"), h, h, 1.0)?,
                        v: Linear::new(gpu, a.pp("v_proj"), h, h, 1.0)?,
                        proj: Linear::new(gpu, a.pp("proj"), h, h, 1.0)?,
                        assign_eps: cfg.assign_eps as f32,
                        norm_new_x: ln(d.pp("norm_new_x"))?,
                        mlp_channels: Mlp::new(gpu, d.pp("mlp_channels"), act, h, channels_dim, h)?,
                    }),
                )
            } else {
                (None, None)
            };
            let group_projector = if prev > 0 && groups > 0 {
                let g = svb.pp("group_projector");
                Some((ln(g.pp("0"))?, Mlp::new(gpu, g.pp("1"), act, prev, h / 2, groups)?))
            } else {
                None
            };
            stages.push(Stage { group_token, layers, downsample, group_projector });
        }
        Ok(Self {
            kernel,
            position_embeddings: get(&emb, &[1, grid * grid, h], "position_embeddings")?.to_dtype(DType::F32)?,
            grid,
            patch: p,
            embed_norm: ln(emb.pp("layernorm"))?,
            stages,
            final_norm: ln(vb.pp("layernorm"))?,
        })
    }

    /// Records the forward of `pixel_values (B, 3, H, W)` into `r`: the final groups (after the
    /// last LayerNorm), each grouping block's soft assignment, and the patch grid.
    pub(crate) fn record(&self, r: &mut Recorder, pixel_values: &Tensor) -> Result<Recorded> {
        let gpu = r.gpu;
        let (_, _, height, width) = pixel_values.dims4()?;
        let batch = pixel_values.dim(0)?;
        let (patches, (gh, gw)) = unfold_patches(pixel_values, self.patch)?;
        let pos = position_embeddings_for(&self.position_embeddings, self.grid, (gh, gw), height == width)?;
        let n = gh * gw;
        let x = GpuTensor::from_tensor(gpu, &patches.reshape((batch, n, ()))?)?;
        let x = r.linear(&x, &self.kernel, Epilogue::Bias)?;
        let x = r.layer_norm(&x, &self.embed_norm)?;
        let mut x = r.add(&x, &GpuTensor::from_tensor(gpu, &pos)?)?;
        let mut groups: Option<GpuTensor> = None;
        let mut soft_maps = Vec::new();
        for stage in &self.stages {
            let tokens = x.shape[1];
            let g = match (&stage.group_token, &stage.group_projector, &groups) {
                (None, _, _) => None,
                (Some(tok), Some((norm, mixer)), Some(prev)) => {
                    let normed = r.layer_norm(prev, norm)?;
                    let projected = r.mixer(&normed, mixer)?;
                    Some(r.add(&projected, tok)?)
                }
                (Some(tok), _, _) => Some(r.repeat(tok, batch)?),
            };
            let mut cat = match &g {
                Some(g) => r.concat(&x, g)?,
                None => x,
            };
            for layer in &stage.layers {
                let normed = r.layer_norm(&cat, &layer.layer_norm1)?;
                let a = r.attention(&normed, None, &layer.self_attn)?;
                let h1 = r.add(&cat, &a)?;
                let normed = r.layer_norm(&h1, &layer.layer_norm2)?;
                let m = r.mlp(&normed, &layer.mlp)?;
                cat = r.add(&h1, &m)?;
            }
            let (tokens_out, group_out) = match &g {
                Some(g) => {
                    let (t, gr) = r.split(&cat, tokens, g.shape[1])?;
                    (t, Some(gr))
                }
                None => (cat, None),
            };
            x = match (&stage.downsample, &group_out) {
                (Some(assign), Some(gr)) => {
                    let (new_x, soft) = r.token_assign(&tokens_out, gr, assign)?;
                    soft_maps.push(soft);
                    new_x
                }
                _ => tokens_out,
            };
            groups = group_out;
        }
        let last = r.layer_norm(&x, &self.final_norm)?;
        Ok(Recorded { last, soft_maps, grid: (gh, gw) })
    }

    /// The forward of `pixel_values (B, 3, H, W)`, recorded into one command buffer; reads back
    /// the final groups and the soft maps.
    pub async fn forward(&self, gpu: &Gpu, kernels: &Kernels, pixel_values: &Tensor) -> Result<VisionOutput> {
        let errors = gpu.catch_errors();
        let mut r = Recorder::new(gpu, kernels);
        let out = self.record(&mut r, pixel_values);
        r.submit();
        errors.check().await?;
        let out = out?;
        let last_hidden_state = to_tensor(gpu, &out.last).await?;
        let mut assignments = Vec::with_capacity(out.soft_maps.len());
        for soft in &out.soft_maps {
            assignments.push(to_tensor(gpu, soft).await?);
        }
        let pooled = last_hidden_state.mean(1)?;
        Ok(VisionOutput { last_hidden_state, pooled, assignments, grid: out.grid })
    }
}

async fn to_tensor(gpu: &Gpu, t: &GpuTensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(t.read(gpu).await?, t.shape.clone(), &Device::Cpu)?)
}

/// What a recorded forward leaves on the GPU.
pub(crate) struct Recorded {
    /// `(B, groups, hidden)`, after the final LayerNorm.
    pub last: GpuTensor,
    /// Each grouping block's soft assignment `(B, groups_out, tokens_in)`.
    pub soft_maps: Vec<GpuTensor>,
    pub grid: (usize, usize),
}

/// Records kernels into one command encoder, allocating each output.
pub(crate) struct Recorder<'a> {
    pub gpu: &'a Gpu,
    pub k: &'a Kernels,
    pub enc: wgpu::CommandEncoder,
}

impl<'a> Recorder<'a> {
    pub fn new(gpu: &'a Gpu, k: &'a Kernels) -> Self {
        Self { gpu, k, enc: gpu.device.create_command_encoder(&Default::default()) }
    }

    /// Hands everything recorded to the GPU.
    pub fn submit(self) {
        self.gpu.queue.submit([self.enc.finish()]);
    }

    pub fn empty(&self, shape: &[usize]) -> GpuTensor {
        GpuTensor::empty(self.gpu, shape)
    }

    /// `a · op(b)` with no epilogue, into a new `(batch, m, n)` tensor.
    pub fn matmul(&mut self, a: &GpuTensor, b: &GpuTensor, layout: BLayout, s: MatmulShape) -> Result<GpuTensor> {
        let c = self.empty(&[s.batch, s.m, s.n]);
        self.k.matmul.encode(self.gpu, &mut self.enc, a, b, layout, None, Epilogue::None, &c, s)?;
        Ok(c)
    }

    /// A projection head (BatchNorm folded into its first layer): Linear, ReLU, Linear.
    pub fn projection(&mut self, x: &GpuTensor, head: &ProjectionHead) -> Result<GpuTensor> {
        let h = self.linear(x, &head.fc_in, Epilogue::BiasRelu)?;
        self.linear(&h, &head.fc_out, Epilogue::Bias)
    }

    /// `x (…, in)` → `(…, out)`.
    fn linear(&mut self, x: &GpuTensor, l: &Linear, ep: Epilogue) -> Result<GpuTensor> {
        let (&input, lead) = x.shape.split_last().ok_or_else(|| Error::Gpu("a linear layer needs a tensor".into()))?;
        if input != l.input {
            return Err(Error::Gpu(format!("a linear layer of {} inputs was given {:?}", l.input, x.shape)));
        }
        let rows = x.len() / input;
        let mut shape = lead.to_vec();
        shape.push(l.output);
        let y = self.empty(&shape);
        let s = MatmulShape { batch: 1, m: rows, n: l.output, k: l.input, b_shared: true };
        self.k.matmul.encode(self.gpu, &mut self.enc, x, &l.weight, BLayout::Transposed, Some(&l.bias), ep, &y, s)?;
        Ok(y)
    }

    /// Each row divided by its norm, in place.
    pub fn l2_normalize(&mut self, x: &GpuTensor) -> Result<()> {
        self.k.rows.encode_l2_normalize(self.gpu, &mut self.enc, x)
    }

    fn layer_norm(&mut self, x: &GpuTensor, ln: &LayerNorm) -> Result<GpuTensor> {
        let y = self.empty(&x.shape);
        self.k.rows.encode_layer_norm(self.gpu, &mut self.enc, x, &ln.weight, &ln.bias, &y, ln.eps)?;
        Ok(y)
    }

    fn add(&mut self, x: &GpuTensor, z: &GpuTensor) -> Result<GpuTensor> {
        let y = self.empty(&x.shape);
        self.k.ops.encode_add(self.gpu, &mut self.enc, x, z, &y)?;
        Ok(y)
    }

    fn transpose(&mut self, x: &GpuTensor, dims: (usize, usize, usize, usize), shape: &[usize]) -> Result<GpuTensor> {
        let y = self.empty(shape);
        self.k.ops.encode_transpose(self.gpu, &mut self.enc, x, &y, dims)?;
        Ok(y)
    }

    fn copy(&mut self, src: &GpuTensor, from: usize, dst: &GpuTensor, to: usize, len: usize) {
        self.enc.copy_buffer_to_buffer(&src.buffer, (from * 4) as u64, &dst.buffer, (to * 4) as u64, (len * 4) as u64);
    }

    /// `(1, G, D)` repeated to `(batch, G, D)`.
    fn repeat(&mut self, t: &GpuTensor, batch: usize) -> Result<GpuTensor> {
        let one = t.len();
        let y = self.empty(&[batch, t.shape[1], t.shape[2]]);
        for b in 0..batch {
            self.copy(t, 0, &y, b * one, one);
        }
        Ok(y)
    }

    /// `[x; g]` along tokens.
    fn concat(&mut self, x: &GpuTensor, g: &GpuTensor) -> Result<GpuTensor> {
        let (b, n, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let gn = g.shape[1];
        let y = self.empty(&[b, n + gn, d]);
        for i in 0..b {
            self.copy(x, i * n * d, &y, i * (n + gn) * d, n * d);
            self.copy(g, i * gn * d, &y, (i * (n + gn) + n) * d, gn * d);
        }
        Ok(y)
    }

    fn split(&mut self, cat: &GpuTensor, n: usize, gn: usize) -> Result<(GpuTensor, GpuTensor)> {
        let (b, d) = (cat.shape[0], cat.shape[2]);
        let (x, g) = (self.empty(&[b, n, d]), self.empty(&[b, gn, d]));
        for i in 0..b {
            self.copy(cat, i * (n + gn) * d, &x, i * n * d, n * d);
            self.copy(cat, (i * (n + gn) + n) * d, &g, i * gn * d, gn * d);
        }
        Ok((x, g))
    }

    fn mlp(&mut self, x: &GpuTensor, m: &Mlp) -> Result<GpuTensor> {
        let h = self.linear(x, &m.fc1, m.act)?;
        self.linear(&h, &m.fc2, Epilogue::Bias)
    }

    /// The MLP across tokens: `(B, G, D)` → `(B, G', D)`.
    fn mixer(&mut self, x: &GpuTensor, m: &Mlp) -> Result<GpuTensor> {
        let (b, g, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let t = self.transpose(x, (b, g, d, 1), &[b, d, g])?;
        let h = self.mlp(&t, m)?;
        let g2 = h.shape[2];
        self.transpose(&h, (b, d, g2, 1), &[b, g2, d])
    }

    /// Multi-head attention of `x (B, T, D)` to `context (B, S, D)` (itself when `None`).
    fn attention(&mut self, x: &GpuTensor, context: Option<&GpuTensor>, a: &Attention) -> Result<GpuTensor> {
        let ctx = context.unwrap_or(x);
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let s = ctx.shape[1];
        let (h, hd) = (a.heads, d / a.heads);
        let q = self.linear(x, &a.q, Epilogue::Bias)?;
        let k = self.linear(ctx, &a.k, Epilogue::Bias)?;
        let v = self.linear(ctx, &a.v, Epilogue::Bias)?;
        let q = self.transpose(&q, (b, t, h, hd), &[b, h, t, hd])?;
        let k = self.transpose(&k, (b, s, h, hd), &[b, h, s, hd])?;
        let v = self.transpose(&v, (b, s, h, hd), &[b, h, s, hd])?;
        let scores = self.empty(&[b * h, t, s]);
        let shape = MatmulShape { batch: b * h, m: t, n: s, k: hd, b_shared: false };
        self.k.matmul.encode(self.gpu, &mut self.enc, &q, &k, BLayout::Transposed, None, Epilogue::None, &scores, shape)?;
        self.k.rows.encode_softmax(self.gpu, &mut self.enc, &scores)?;
        let mixed = self.empty(&[b, h, t, hd]);
        let shape = MatmulShape { batch: b * h, m: t, n: hd, k: s, b_shared: false };
        self.k.matmul.encode(self.gpu, &mut self.enc, &scores, &v, BLayout::Plain, None, Epilogue::None, &mixed, shape)?;
        let merged = self.transpose(&mixed, (b, h, t, hd), &[b, t, d])?;
        self.linear(&merged, &a.out, Epilogue::Bias)
    }

    /// `GroupViTTokenAssign`: returns the new group features and the soft assignment.
    fn token_assign(&mut self, x: &GpuTensor, groups: &GpuTensor, ta: &TokenAssign) -> Result<(GpuTensor, GpuTensor)> {
        let groups = self.layer_norm(groups, &ta.norm_tokens)?;
        let x = self.layer_norm(x, &ta.norm_x)?;
        let projected = self.mixer(&groups, &ta.mlp_inter)?;
        let projected = self.layer_norm(&projected, &ta.norm_post_tokens)?;
        // Cross-attention of the projected groups to the image tokens.
        let pre = &ta.pre_assign_attn;
        let a = self.attention(&projected, Some(&x), &pre.attn)?;
        let h1 = self.add(&projected, &a)?;
        let n2 = self.layer_norm(&h1, &pre.norm2)?;
        let m = self.mlp(&n2, &pre.mlp)?;
        let h2 = self.add(&h1, &m)?;
        let projected = self.layer_norm(&h2, &pre.norm_post)?;
        // The assignment.
        let (b, g, d) = (projected.shape[0], projected.shape[1], projected.shape[2]);
        let n = x.shape[1];
        let q = self.linear(&projected, &ta.q, Epilogue::Bias)?;
        let k = self.linear(&x, &ta.k, Epilogue::Bias)?;
        let v = self.linear(&x, &ta.v, Epilogue::Bias)?;
        let raw = self.empty(&[b, g, n]);
        let shape = MatmulShape { batch: b, m: g, n, k: d, b_shared: false };
        self.k.matmul.encode(self.gpu, &mut self.enc, &q, &k, BLayout::Transposed, None, Epilogue::None, &raw, shape)?;
        let (soft, hard) = (self.empty(&[b, g, n]), self.empty(&[b, g, n]));
        self.k.ops.encode_assign(self.gpu, &mut self.enc, &raw, &soft, &hard, ta.assign_eps)?;
        let pooled = self.empty(&[b, g, d]);
        let shape = MatmulShape { batch: b, m: g, n: d, k: n, b_shared: false };
        self.k.matmul.encode(self.gpu, &mut self.enc, &hard, &v, BLayout::Plain, None, Epilogue::None, &pooled, shape)?;
        let assigned = self.linear(&pooled, &ta.proj, Epilogue::Bias)?;
        let new_x = self.add(&assigned, &projected)?;
        let normed = self.layer_norm(&new_x, &ta.norm_new_x)?;
        let m = self.mlp(&normed, &ta.mlp_channels)?;
        Ok((self.add(&new_x, &m)?, soft))
    }
}

/// `visual_projection` on the GPU, with the BatchNorm folded into its first layer as on the CPU.
pub(crate) struct ProjectionHead {
    fc_in: Linear,
    fc_out: Linear,
}

impl ProjectionHead {
    fn new(gpu: &Gpu, head: &crate::model::projection::ProjectionHead) -> Result<Self> {
        let [fc_in, fc_out] = head.layers().map(|l| Linear::from_parts(gpu, l.weight(), l.bias()));
        Ok(Self { fc_in: fc_in?, fc_out: fc_out? })
    }
}

/// The image encoder on an open GPU: device, compiled kernels and uploaded weights.
pub struct GpuImageEncoder {
    pub(crate) gpu: Gpu,
    pub(crate) kernels: Kernels,
    pub(crate) tower: GpuVisionTransformer,
    pub(crate) projection: ProjectionHead,
}

impl GpuImageEncoder {
    /// Opens the best GPU and uploads the `vision_model` weights under `vb` and the visual
    /// projection. See [`Gpu::new`] for `allow_software`.
    pub async fn open(
        vb: VarBuilder<'_>,
        cfg: &VisionConfig,
        projection: &crate::model::projection::ProjectionHead,
        allow_software: bool,
    ) -> Result<Self> {
        let gpu = Gpu::new(allow_software).await?;
        let errors = gpu.catch_errors();
        let kernels = Kernels::new(&gpu);
        let tower = GpuVisionTransformer::new(&gpu, vb, cfg);
        let projection = ProjectionHead::new(&gpu, projection);
        errors.check().await?;
        Ok(Self { gpu, kernels, tower: tower?, projection: projection? })
    }

    pub fn adapter(&self) -> &super::AdapterSummary {
        &self.gpu.adapter
    }

    /// The device (for profiling).
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The vision tower's output, read back for the CPU's projection (classification, raw logits).
    pub async fn forward(&self, pixel_values: &Tensor) -> Result<VisionOutput> {
        self.tower.forward(&self.gpu, &self.kernels, pixel_values).await
    }
}
