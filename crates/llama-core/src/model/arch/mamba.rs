//! `mamba`: Mamba-1 (llama.cpp's src/models/mamba.cpp over `build_mamba_layer` of
//! mamba-base.cpp), and FalconMamba under the same name (`ssm.dt_b_c_rms`). No attention and no
//! FFN: each layer is an RMS norm, then the selective state-space mixer, then the residual:
//! - `ssm_in` projects to x and the gate z (d_inner each);
//! - x goes through a causal depthwise convolution over the last `ssm.conv_kernel` inputs (state
//!   kept across batches), its bias, SiLU;
//! - `ssm_x` projects x to dt (`ssm.time_step_rank` wide), B and C (`ssm.state_size` each) — RMS
//!   normalized without weights in FalconMamba — and `ssm_dt` (+ bias) widens dt to d_inner;
//! - the selective scan (`recurrent::ssm_scan`) runs the per-channel state s ← s·exp(dt·A) + B·x·dt
//!   and reads y = C·s; then y + D·x, times silu(z), and `ssm_out`.
//!
//! The recurrent state per layer is the convolution's last d_conv - 1 inputs of every channel and
//! the [d_inner][d_state] SSM state; the model keeps no K/V.

use super::Network;
use crate::gguf::GgufFile;
use crate::kernels::elementwise;
use crate::model::blocks;
use crate::model::context::Context;
use crate::model::hparams::{HParams, Meta};
use crate::model::recurrent::{RecurrentSize, ScanShape};
use crate::model::weights::{Loader, WRef};
use crate::model::Model;
use crate::{Error, Result};

struct Mamba {
    d_conv: usize,
    d_inner: usize,
    d_state: usize,
    dt_rank: usize,
    /// `ssm.dt_b_c_rms`: dt, B and C RMS-normalized (no weights) before use (FalconMamba).
    dt_b_c_rms: bool,
    tok_embd: WRef, // [n_vocab][n_embd]
    layers: Vec<Layer>,
    output_norm: Vec<f32>, // [n_embd]
    output: WRef,          // [n_vocab][n_embd] token_embd unless the file has `output.weight`
}

struct Layer {
    attn_norm: Vec<f32>,    // [n_embd]
    ssm_in: WRef,           // [2·d_inner][n_embd] x then z
    ssm_conv1d: Vec<f32>,   // [d_inner][d_conv]
    ssm_conv1d_b: Vec<f32>, // [d_inner]
    ssm_x: WRef,            // [dt_rank + 2·d_state][d_inner] dt, B, C
    ssm_dt: WRef,           // [d_inner][dt_rank]
    ssm_dt_b: Vec<f32>,     // [d_inner]
    ssm_a: Vec<f32>,        // [d_inner][d_state] A = -exp(A_log)
    ssm_d: Vec<f32>,        // [d_inner]
    ssm_out: WRef,          // [n_embd][d_inner]
}

/// `Buffers::extra` of this family, by index (floats per row in `Network::extra_buffers`).
const XZ: usize = 0; // xz = cur · ssm_inᵀ [2·d_inner]
const SEQ: usize = 1; // x (the convolution's input), later silu(z)·y [d_inner]
const XC: usize = 2; // x after the convolution, its bias and SiLU [d_inner]
const XDB: usize = 3; // x_db = x · ssm_xᵀ: dt, B, C [dt_rank + 2·d_state]
const DTR: usize = 4; // dt, contiguous [dt_rank]
const DT: usize = 5; // dt · ssm_dtᵀ + ssm_dt_b [d_inner]
const Y: usize = 6; // the scan's output [d_inner]

pub(super) fn load(f: &GgufFile, hp: &HParams) -> Result<Box<dyn Network>> {
    let meta = Meta { f, arch: hp.arch };
    let a = hp.arch.name();
    let d_conv = meta.req_usize("ssm.conv_kernel")?;
    let d_inner = meta.req_usize("ssm.inner_size")?;
    let d_state = meta.req_usize("ssm.state_size")?;
    let dt_rank = meta.req_usize("ssm.time_step_rank")?;
    if d_conv == 0 || d_inner == 0 || d_state == 0 || dt_rank == 0 {
        return Err(Error::Model(format!(
            "{a}: ssm.conv_kernel {d_conv}, ssm.inner_size {d_inner}, ssm.state_size {d_state} and \
             ssm.time_step_rank {dt_rank} must all be > 0"
        )));
    }
    let dt_b_c_rms = meta.opt_bool("ssm.dt_b_c_rms")?.unwrap_or(false);
    let l = Loader::new(f);
    let (tok_embd, output) = blocks::load_embd_output(&l, hp)?;
    let n_embd = hp.n_embd;
    let layers = (0..hp.n_layer)
        .map(|il| {
            let n = |s: &str| format!("blk.{il}.{s}");
            Ok(Layer {
                attn_norm: l.vector(&n("attn_norm.weight"), n_embd)?,
                ssm_in: l.matrix(&n("ssm_in.weight"), Some(2 * d_inner), n_embd)?,
                ssm_conv1d: l.small_matrix(&n("ssm_conv1d.weight"), d_inner, d_conv)?,
                ssm_conv1d_b: l.vector(&n("ssm_conv1d.bias"), d_inner)?,
                ssm_x: l.matrix(&n("ssm_x.weight"), Some(dt_rank + 2 * d_state), d_inner)?,
                ssm_dt: l.matrix(&n("ssm_dt.weight"), Some(d_inner), dt_rank)?,
                ssm_dt_b: l.vector(&n("ssm_dt.bias"), d_inner)?,
                ssm_a: l.small_matrix(&n("ssm_a"), d_inner, d_state)?,
                ssm_d: l.vector(&n("ssm_d"), d_inner)?,
                ssm_out: l.matrix(&n("ssm_out.weight"), Some(n_embd), d_inner)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let output_norm = l.vector("output_norm.weight", n_embd)?;
    Ok(Box::new(Mamba { d_conv, d_inner, d_state, dt_rank, dt_b_c_rms, tok_embd, layers, output_norm, output }))
}

impl Network for Mamba {
    fn forward(&self, m: &Model, c: &mut Context, tokens: &[u32]) {
        let (mut p, b) = blocks::begin(m, c, tokens.len());
        let (n, eps) = (p.n, p.hp.rms_eps);
        let (di, ds, dr) = (self.d_inner, self.d_state, self.dt_rank);
        let w_db = dr + 2 * ds;
        let [xz, seq, xc, x_db, dtr, dt, y] = &mut b.extra[..] else { unreachable!("extra_buffers has seven") };
        let ones = vec![1f32; dr.max(ds)]; // ggml_rms_norm without a weight

        // inpL = inp_embd                                              x: [n][n_embd]
        p.inp_embd(&self.tok_embd, tokens, &mut b.x);
        for (il, l) in self.layers.iter().enumerate() {
            // attn_norm                                                cur: [n][n_embd]
            p.norm(&l.attn_norm, &b.x, &mut b.cur);
            // xz = cur · ssm_inᵀ, split into x and z                     xz: [n][2·d_inner]
            p.matmul(&l.ssm_in, &b.cur, xz);
            for t in 0..n {
                seq[t * di..(t + 1) * di].copy_from_slice(&xz[t * 2 * di..t * 2 * di + di]);
            }
            // x = silu(ssm_conv(conv_states ++ x) + ssm_conv1d_b); the conv state keeps the
            // last d_conv - 1 inputs                                    xc: [n][d_inner]
            p.ssm_conv(il, &l.ssm_conv1d, self.d_conv, seq, xc);
            p.add_bias(xc, &l.ssm_conv1d_b);
            p.silu(xc, di, di);
            // x_db = x · ssm_xᵀ: dt, B, C                          x_db: [n][dt_rank + 2·d_state]
            p.matmul(&l.ssm_x, xc, x_db);
            // dt (ggml_cont of the view, or its RMS norm), B and C normed in place if asked
            //                                                           dtr: [n][dt_rank]
            for t in 0..n {
                let row = &mut x_db[t * w_db..(t + 1) * w_db];
                let d = &mut dtr[t * dr..(t + 1) * dr];
                if self.dt_b_c_rms {
                    elementwise::rms_norm(d, &row[..dr], &ones[..dr], eps);
                    for bc in row[dr..].chunks_exact_mut(ds) {
                        let src = bc.to_vec();
                        elementwise::rms_norm(bc, &src, &ones[..ds], eps);
                    }
                } else {
                    d.copy_from_slice(&row[..dr]);
                }
            }
            // dt = dt · ssm_dtᵀ + ssm_dt_b                               dt: [n][d_inner]
            p.matmul(&l.ssm_dt, dtr, dt);
            p.add_bias(dt, &l.ssm_dt_b);
            // y_ssm: the selective scan over the layer's state             y: [n][d_inner]
            let sh = ScanShape { d_inner: di, d_state: ds, bc_stride: w_db };
            p.ssm_scan(il, sh, xc, dt, &l.ssm_a, &x_db[dr..], &x_db[dr + ds..], y);
            // y = y + x · D
            for t in 0..n {
                let (yr, xr) = (&mut y[t * di..(t + 1) * di], &xc[t * di..(t + 1) * di]);
                yr.iter_mut().zip(xr).zip(&l.ssm_d).for_each(|((yv, &xv), &d)| *yv += xv * d);
            }
            // y = silu(z) · y (ggml_swiglu_split), then ssm_out               seq: [n][d_inner]
            for t in 0..n {
                seq[t * di..(t + 1) * di].copy_from_slice(&xz[t * 2 * di + di..(t + 1) * 2 * di]);
            }
            p.swiglu(seq, y, di);
            //                                                          proj: [n][n_embd]
            p.matmul(&l.ssm_out, seq, &mut b.proj);
            // l_out = cur + inpL: the next layer's inpL                   x: [n][n_embd]
            p.add(&mut b.x, &b.proj);
        }
        // result_norm, result_output                               logits: [n_out][n_vocab]
        p.output(&self.output_norm, &self.output, None, &b.x, &mut b.cur);
    }

    fn tok_embd(&self) -> WRef {
        self.tok_embd
    }

    fn matrices(&self) -> Vec<WRef> {
        let mut v: Vec<WRef> = self.layers.iter().flat_map(|l| [l.ssm_in, l.ssm_x, l.ssm_dt, l.ssm_out]).collect();
        v.push(self.output);
        v
    }

    fn max_n_ff(&self) -> usize {
        0
    }

    fn recurrent_sizes(&self) -> Vec<RecurrentSize> {
        let s = RecurrentSize { conv: self.d_inner * (self.d_conv - 1), ssm: self.d_inner * self.d_state };
        vec![s; self.layers.len()]
    }

    fn extra_buffers(&self) -> Vec<usize> {
        let mut v = vec![0; 7];
        v[XZ] = 2 * self.d_inner;
        v[SEQ] = self.d_inner;
        v[XC] = self.d_inner;
        v[XDB] = self.dt_rank + 2 * self.d_state;
        v[DTR] = self.dt_rank;
        v[DT] = self.d_inner;
        v[Y] = self.d_inner;
        v
    }
}
