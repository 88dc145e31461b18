// CGD v10 (He et al., arXiv 1907.09665: Eq. 10-12, Table 2) as one native CPU op with its backward.
//
// The module X * s(X) of cgd_video/models/cgd.py for variant v10 (final(v3, v6)) with temporal mode "shared"
// (Eq. 12: per-frame pools, first-level terms summed over time) or "mean" (pools of the temporal mean), in
// float32/float64, for clips whose (N, C, T, H, W) view has each H*W row contiguous or the channels
// innermost. Forward: one pass over X for the pools (average, max and its first position), the descriptor
// on the (N, C, T') pools, one pass writing X * s. Backward: one pass reading grad and out for
// d s = sum(grad * out) / s, the descriptor's backward, one pass writing grad_x (plus d max at the max
// positions). Evaluation: cgd_v10_scale gives s alone (one read of X). Same math and saved tensors as
// cgd_kernels.CGDFunction (the reference it is tested against,
// and the path every other case takes); loaded by cgd_native.py.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <limits>

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

namespace {

constexpr double S_MIN = 5.9604644775390625e-08;  // 2**-24

// Memory layout of a (N, C, T, H, W) clip: rows (each (n,c,t) row of H*W contiguous) or channels innermost.
struct Layout {
  bool rows;
  int64_t N, C, T, HW, sN, sC, sT;
};

bool layout_of(const Tensor& x, Layout& L) {
  auto sz = x.sizes(); auto st = x.strides();
  int64_t N = sz[0], C = sz[1], T = sz[2], H = sz[3], W = sz[4];
  L.N = N; L.C = C; L.T = T; L.HW = H * W; L.sN = st[0]; L.sC = st[1]; L.sT = st[2];
  if ((W == 1 || st[4] == 1) && (H == 1 || st[3] == W)) { L.rows = true; return true; }
  if ((C == 1 || st[1] == 1) && (W == 1 || st[4] == C) && (H == 1 || st[3] == W * C)) { L.rows = false; return true; }
  return false;
}

// Row (n, c, t) -> fn(r, n, c, t, offset of its H*W row): the walk for the rows layout, rows split across threads.
template <typename F>
void for_each_row(const Layout& L, F fn) {
  at::parallel_for(0, L.N * L.C * L.T, 16, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t n = r / (L.C * L.T), c = (r / L.T) % L.C, t = r % L.T;
      fn(r, n, c, t, n * L.sN + c * L.sC + t * L.sT);
    }
  });
}

// Frame (n, t) -> fn(n, t, offset of its (H*W, C) block): the walk for the channels-innermost layout.
template <typename F>
void for_each_frame(const Layout& L, F fn) {
  at::parallel_for(0, L.N * L.T, 1, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) fn(q / L.T, q % L.T, (q / L.T) * L.sN + (q % L.T) * L.sT);
  });
}

// 8-lane vectors of GCC's vector extension: one AVX2 register per float vector in the avx2 build, pairs of SSE
// registers in the baseline build; the same operations in the same order (so the same bits) in both.
template <typename scalar_t>
struct Lanes {
  typedef scalar_t vec __attribute__((vector_size(8 * sizeof(scalar_t))));
  static vec load(const scalar_t* p) { vec v; __builtin_memcpy(&v, p, sizeof(vec)); return v; }
  static vec splat(scalar_t x) { vec v; for (int k = 0; k < 8; ++k) v[k] = x; return v; }
  static scalar_t sum(vec v) { scalar_t s = 0; for (int k = 0; k < 8; ++k) s += v[k]; return s; }
};

// Sum, max and first position of the max of `len` contiguous values: one vector pass for the sum and the
// max (two accumulators of 8 lanes each), then a scan for the max's first position, 8 values per compare
// (the row is in L1 by then; a running position per lane costs more than the scan). kPos false: no scan
// (evaluation's scale needs no position).
template <bool kPos, typename scalar_t>
void row_stats(const scalar_t* p, int64_t len, scalar_t& sum, scalar_t& max, int64_t& pos) {
  using V = Lanes<scalar_t>;
  using vec = typename V::vec;
  const scalar_t lowest = -std::numeric_limits<scalar_t>::infinity();
  vec s0 = V::splat(0), s1 = s0, m0 = V::splat(lowest), m1 = m0;
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) {
    const vec a = V::load(p + i), b = V::load(p + i + 8);
    s0 += a; s1 += b;
    m0 = a > m0 ? a : m0; m1 = b > m1 ? b : m1;
  }
  scalar_t s = V::sum(s0 + s1), m = lowest;
  for (int k = 0; k < 8; ++k) { m = m0[k] > m ? m0[k] : m; m = m1[k] > m ? m1[k] : m; }
  for (; i < len; ++i) { s += p[i]; m = p[i] > m ? p[i] : m; }
  sum = s; max = m;
  if (!kPos) return;
  const vec mv = V::splat(m);
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    const auto eq = V::load(p + j) == mv;
    bool any = false;
    for (int k = 0; k < 8; ++k) any |= eq[k] != 0;
    if (any) break;
  }
  while (j < len && !(p[j] == m)) ++j;
  pos = j < len ? j : 0;  // no position only for a row without a number (NaN), as before
}

// Per-channel sum, max and first position of the max of a contiguous (HW, C) block into out = [sum | max | pos]
// (each C long). The position is carried as a float (exact below 2**24) so that the compare-and-select of
// the inner loop is one vector blend. kPos false: sum and max only.
template <bool kPos, typename scalar_t>
void block_stats(const scalar_t* __restrict x, int64_t HW, int64_t C, scalar_t* __restrict out) {
  scalar_t* __restrict s = out;
  scalar_t* __restrict m = out + C;
  scalar_t* __restrict pos = out + 2 * C;
  std::fill(s, m, scalar_t(0));
  std::fill(m, pos, -std::numeric_limits<scalar_t>::infinity());
  std::fill(pos, pos + C, scalar_t(0));
  for (int64_t l = 0; l < HW; ++l) {
    const scalar_t* __restrict p = x + l * C;
    const scalar_t lf = static_cast<scalar_t>(l);
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t v = p[c], mc = m[c];
      const bool gt = v > mc;
      s[c] += v;
      m[c] = gt ? v : mc;
      if (kPos) pos[c] = gt ? lf : pos[c];
    }
  }
}

// "shared" mode: pools of every frame, (N, C, T); positions of the maxima into idx (kPos)
template <bool kPos, typename scalar_t>
void pools(const scalar_t* x, const Layout& L, scalar_t* avg, scalar_t* mx, int64_t* idx) {
  const int64_t HW = L.HW, C = L.C;
  if (L.rows) {
    for_each_row(L, [&](int64_t r, int64_t, int64_t, int64_t, int64_t off) {
      scalar_t s;
      int64_t pos = 0;
      row_stats<kPos>(x + off, HW, s, mx[r], pos);
      avg[r] = s / HW;
      if (kPos) idx[r] = pos;
    });
    return;
  }
  for_each_frame(L, [&](int64_t n, int64_t t, int64_t off) {
    std::vector<scalar_t> buf(3 * C);
    const scalar_t *s = buf.data(), *m = s + C, *pos = m + C;
    block_stats<kPos>(x + off, HW, C, buf.data());
    for (int64_t c = 0; c < C; ++c) {
      int64_t r = (n * C + c) * L.T + t;
      avg[r] = s[c] / HW; mx[r] = m[c];
      if (kPos) idx[r] = static_cast<int64_t>(pos[c]);
    }
  });
}

// "mean" mode: pools of the temporal mean of X, (N, C, 1); positions into idx (kPos)
template <bool kPos, typename scalar_t>
void pools_of_mean(const scalar_t* x, const Layout& L, scalar_t* avg, scalar_t* mx, int64_t* idx) {
  const int64_t HW = L.HW, C = L.C, T = L.T;
  const int64_t inner = L.rows ? HW : HW * C;  // one (n, c) of rows, or one sample's (H*W, C) frame block
  at::parallel_for(0, L.rows ? L.N * C : L.N, 1, [&](int64_t b, int64_t e) {
    std::vector<scalar_t> xm(inner), acc(L.rows ? 0 : 3 * C);
    for (int64_t u = b; u < e; ++u) {
      const int64_t n = L.rows ? u / C : u, c0 = L.rows ? u % C : 0;
      std::fill(xm.begin(), xm.end(), scalar_t(0));
      for (int64_t t = 0; t < T; ++t) {
        const scalar_t* p = x + n * L.sN + c0 * L.sC + t * L.sT;
        for (int64_t q = 0; q < inner; ++q) xm[q] += p[q];
      }
      for (int64_t q = 0; q < inner; ++q) xm[q] /= static_cast<scalar_t>(T);
      if (L.rows) {
        scalar_t s;
        int64_t pos = 0;
        row_stats<kPos>(xm.data(), HW, s, mx[u], pos);
        avg[u] = s / HW;
        if (kPos) idx[u] = pos;
        continue;
      }
      const scalar_t *s = acc.data(), *m = s + C, *pos = m + C;
      block_stats<kPos>(xm.data(), HW, C, acc.data());
      for (int64_t c = 0; c < C; ++c) {
        avg[n * C + c] = s[c] / HW; mx[n * C + c] = m[c];
        if (kPos) idx[n * C + c] = static_cast<int64_t>(pos[c]);
      }
    }
  });
}

// out = x * s[n, c] (one scale per sample and channel for all frames)
template <typename scalar_t>
void rescale(const scalar_t* x, scalar_t* out, const Layout& L, const scalar_t* sc) {
  const int64_t HW = L.HW, C = L.C;
  if (L.rows) {
    for_each_row(L, [&](int64_t, int64_t n, int64_t c, int64_t, int64_t off) {
      const scalar_t f = sc[n * C + c];
      for (int64_t i = 0; i < HW; ++i) out[off + i] = x[off + i] * f;
    });
    return;
  }
  for_each_frame(L, [&](int64_t n, int64_t, int64_t off) {
    const scalar_t* f = sc + n * C;
    for (int64_t l = 0; l < HW; ++l)
      for (int64_t c = 0; c < C; ++c) out[off + l * C + c] = x[off + l * C + c] * f[c];
  });
}

// dot[n, c] = sum over t of the rows' sums (N, C, T)
template <typename scalar_t>
void sum_frames(const std::vector<scalar_t>& rows, int64_t NC, int64_t T, scalar_t* dot) {
  for (int64_t nc = 0; nc < NC; ++nc) {
    scalar_t s = 0;
    for (int64_t t = 0; t < T; ++t) s += rows[nc * T + t];
    dot[nc] = s;
  }
}

// dot[n, c] = sum over t, h, w of g * out (both in the layout L)
template <typename scalar_t>
void backward_dot(const scalar_t* g, const scalar_t* out, const Layout& L, scalar_t* dot) {
  const int64_t HW = L.HW, C = L.C;
  std::vector<scalar_t> rows(L.N * C * L.T);
  if (L.rows) {
    for_each_row(L, [&](int64_t r, int64_t, int64_t, int64_t, int64_t off) {
      using V = Lanes<scalar_t>;
      typename V::vec a0 = V::splat(0), a1 = a0;
      int64_t i = 0;
      for (; i + 16 <= HW; i += 16) {
        a0 += V::load(g + off + i) * V::load(out + off + i);
        a1 += V::load(g + off + i + 8) * V::load(out + off + i + 8);
      }
      scalar_t a = V::sum(a0 + a1);
      for (; i < HW; ++i) a += g[off + i] * out[off + i];
      rows[r] = a;
    });
  } else {
    for_each_frame(L, [&](int64_t n, int64_t t, int64_t off) {
      std::vector<scalar_t> a(C, scalar_t(0));
      for (int64_t l = 0; l < HW; ++l)
        for (int64_t c = 0; c < C; ++c) a[c] += g[off + l * C + c] * out[off + l * C + c];
      for (int64_t c = 0; c < C; ++c) rows[(n * C + c) * L.T + t] = a[c];
    });
  }
  sum_frames(rows, L.N * C, L.T, dot);
}

// dot[n, c] when g and out have different layouts (BN's backward hands a channels-last clip a contiguous
// gradient): one tensor has contiguous H*W rows (R), the other innermost channels (I). Each (n, t) walks
// H*W once for a block of 16 channels: 16 streaming rows of R against one 64-byte line of I per position.
template <typename scalar_t>
void backward_dot_mixed(const scalar_t* r, const Layout& RL, const scalar_t* in, const Layout& IL, scalar_t* dot) {
  constexpr int64_t B = 16;
  const int64_t C = RL.C, HW = RL.HW;
  std::vector<scalar_t> rows(RL.N * C * RL.T);
  for_each_frame(IL, [&](int64_t n, int64_t t, int64_t off) {
    for (int64_t c0 = 0; c0 < C; c0 += B) {
      const int64_t cb = std::min(B, C - c0);
      const scalar_t* rp[B];
      scalar_t acc[B] = {0};
      for (int64_t k = 0; k < cb; ++k) rp[k] = r + n * RL.sN + (c0 + k) * RL.sC + t * RL.sT;
      for (int64_t l = 0; l < HW; ++l) {
        const scalar_t* il = in + off + l * C + c0;
        for (int64_t k = 0; k < cb; ++k) acc[k] += rp[k][l] * il[k];
      }
      for (int64_t k = 0; k < cb; ++k) rows[(n * C + c0 + k) * RL.T + t] = acc[k];
    }
  });
  sum_frames(rows, RL.N * C, RL.T, dot);
}

// gx = g * s[n, c] + shift[n, c, t'], then + dmax[n, c, t'] at the max position (t' = t, or 0 when T' = 1)
template <typename scalar_t>
void backward_apply(const scalar_t* g, scalar_t* gx, const Layout& L, int64_t tp, const scalar_t* sc,
                    const scalar_t* shift, const int64_t* idx, const scalar_t* dmax) {
  const int64_t HW = L.HW, C = L.C;
  if (L.rows) {
    for_each_row(L, [&](int64_t r, int64_t n, int64_t c, int64_t, int64_t off) {
      const int64_t rp = tp == 1 ? n * C + c : r;  // the pools' row: per frame, or the temporal mean's
      const scalar_t f = sc[n * C + c], sh = shift[rp];
      for (int64_t i = 0; i < HW; ++i) gx[off + i] = g[off + i] * f + sh;
      gx[off + idx[rp]] += dmax[rp];
    });
    return;
  }
  for_each_frame(L, [&](int64_t n, int64_t t, int64_t off) {
    std::vector<scalar_t> sh(C);
    const scalar_t* f = sc + n * C;
    for (int64_t c = 0; c < C; ++c) sh[c] = shift[(n * C + c) * tp + (tp == 1 ? 0 : t)];
    for (int64_t l = 0; l < HW; ++l)
      for (int64_t c = 0; c < C; ++c) gx[off + l * C + c] = g[off + l * C + c] * f[c] + sh[c];
    for (int64_t c = 0; c < C; ++c) {
      int64_t rp = (n * C + c) * tp + (tp == 1 ? 0 : t);
      gx[off + idx[rp] * C + c] += dmax[rp];
    }
  });
}

}  // namespace

// The descriptor of v10 shared on (N, C, T) pools -> tape. Params p: w0,b0,w1,b1,wf,bf each [C].
// Tape (all contiguous, scalar_t): sa (N,T,C), s1 (N,T), s2 (N,T), y1 (N,C), y2 (N,C), s3 (N), y (N,C), sc (N,C)
template <typename scalar_t>
void descriptor(int64_t N, int64_t C, int64_t T, const scalar_t* avg, const scalar_t* mx, const scalar_t* const* p,
                scalar_t* sa, scalar_t* s1, scalar_t* s2, scalar_t* y1, scalar_t* y2, scalar_t* s3, scalar_t* y,
                scalar_t* sc) {
  const scalar_t *w0 = p[0], *b0 = p[1], *w1 = p[2], *b1 = p[3], *wf = p[4], *bf = p[5];
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* q = sa + (n * T + t) * C;
      scalar_t m = -std::numeric_limits<scalar_t>::infinity();
      for (int64_t c = 0; c < C; ++c) m = std::max(m, avg[(n * C + c) * T + t]);
      double z = 0, d0 = 0, d1 = 0;  // sums over C in double: the descriptor is tiny, its rounding is not
      for (int64_t c = 0; c < C; ++c) {
        scalar_t a = avg[(n * C + c) * T + t];
        q[c] = std::exp(a - m); z += q[c];
        d0 += double(a) * w0[c]; d1 += double(mx[(n * C + c) * T + t]) * w1[c];
      }
      for (int64_t c = 0; c < C; ++c) q[c] = static_cast<scalar_t>(q[c] / z);
      s1[n * T + t] = static_cast<scalar_t>(d0); s2[n * T + t] = static_cast<scalar_t>(d1);
    }
    double d3 = 0;
    for (int64_t c = 0; c < C; ++c) {
      double z1 = 0, z2 = 0;
      for (int64_t t = 0; t < T; ++t) {
        double g = sa[(n * T + t) * C + c];
        z1 += g * s1[n * T + t]; z2 += g * s2[n * T + t];
      }
      y1[n * C + c] = static_cast<scalar_t>(std::tanh(z1 + b0[c]));
      y2[n * C + c] = static_cast<scalar_t>(std::tanh(z2 + b1[c]));
      d3 += double(y2[n * C + c]) * wf[c];
    }
    s3[n] = static_cast<scalar_t>(d3);
    for (int64_t c = 0; c < C; ++c) {
      y[n * C + c] = static_cast<scalar_t>(std::tanh(double(bf[c]) + double(y1[n * C + c]) * s3[n]));
      sc[n * C + c] = std::max(scalar_t(1) + y[n * C + c], scalar_t(S_MIN));
    }
  }
}

// The small tensors the backward needs, packed in one buffer (one allocation, one saved tensor):
// avg, mx (N, C, T'); sa (N, T', C); s1, s2 (N, T'); y1, y2, y, sc (N, C); s3 (N).
template <typename scalar_t>
struct Tape {
  scalar_t *avg, *mx, *sa, *s1, *s2, *y1, *y2, *y, *sc, *s3;
  static int64_t size(int64_t N, int64_t C, int64_t T) { return 3 * N * C * T + 2 * N * T + 4 * N * C + N; }
  Tape(scalar_t* b, int64_t N, int64_t C, int64_t T) {
    avg = b; mx = avg + N * C * T; sa = mx + N * C * T; s1 = sa + N * C * T; s2 = s1 + N * T;
    y1 = s2 + N * T; y2 = y1 + N * C; y = y2 + N * C; sc = y + N * C; s3 = sc + N * C;
  }
};

// Pools of X and the descriptor on them, into the tape: the forward up to s. The max positions go into idx
// (kPos, for the backward), or are not located (evaluation).
template <bool kPos, typename scalar_t>
void scale_of(const scalar_t* xp, const Layout& L, bool mean, const Tensor* params, Tape<scalar_t>& tp,
              int64_t* idx) {
  const scalar_t* p[6];
  for (int k = 0; k < 6; ++k) p[k] = params[k].data_ptr<scalar_t>();
  if (mean) pools_of_mean<kPos, scalar_t>(xp, L, tp.avg, tp.mx, idx);
  else pools<kPos, scalar_t>(xp, L, tp.avg, tp.mx, idx);
  descriptor<scalar_t>(L.N, L.C, mean ? 1 : L.T, tp.avg, tp.mx, p, tp.sa, tp.s1, tp.s2, tp.y1, tp.y2, tp.s3, tp.y,
                       tp.sc);
}

class CGDv10 : public torch::autograd::Function<CGDv10> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor x, Tensor w0, Tensor b0, Tensor w1, Tensor b1, Tensor wf,
                        Tensor bf, bool mean) {
    Layout L;
    TORCH_CHECK(layout_of(x, L), "cgd native: unsupported layout");
    auto opts = x.options();
    int64_t N = L.N, C = L.C, T = mean ? 1 : L.T;  // T: frames of the pools (T' in cgd.py)
    Tensor tape = at::empty({Tape<float>::size(N, C, T)}, opts);
    Tensor idx = at::empty({N, C, T}, opts.dtype(at::kLong));
    Tensor out = at::empty_like(x);
    Tensor params[6] = {w0.contiguous(), b0.contiguous(), w1.contiguous(), b1.contiguous(), wf.contiguous(),
                        bf.contiguous()};
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cgd_forward", [&] {
      const scalar_t* xp = x.data_ptr<scalar_t>();
      Tape<scalar_t> tp(tape.data_ptr<scalar_t>(), N, C, T);
      scale_of<true, scalar_t>(xp, L, mean, params, tp, idx.data_ptr<int64_t>());
      rescale<scalar_t>(xp, out.data_ptr<scalar_t>(), L, tp.sc);
    });
    ctx->save_for_backward({out, idx, tape, params[0], params[2], params[4]});
    ctx->saved_data["mean"] = mean;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto v = ctx->get_saved_variables();
    Tensor out = v[0], idx = v[1], tape = v[2], w0 = v[3], w1 = v[4], wf = v[5];
    Tensor g = grads[0];
    Layout L, G;
    layout_of(out, L);
    // g in out's strides, or in the other layout kind (the mixed dot); anything else is copied into out's
    if (!layout_of(g, G) || (g.strides() != out.strides() && G.rows == L.rows)) {
      g = at::empty_like(out).copy_(g);
      G = L;
    }
    const bool same = g.strides() == out.strides();
    const bool mean = ctx->saved_data["mean"].toBool();
    int64_t N = L.N, C = L.C, T = mean ? 1 : L.T;
    const int64_t frames = L.T;  // the mean mode's pools give each frame 1/T of their gradient
    auto opts = out.options();
    Tensor dparams = at::zeros({6, C}, opts);  // dw0, db0, dw1, db1, dwf, dbf
    Tensor shift_dmax = at::empty({2, N * C * T}, opts);
    Tensor gx = ctx->needs_input_grad(0) ? at::empty_like(g) : Tensor();
    AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "cgd_backward", [&] {
      std::vector<scalar_t> dot(N * C);
      if (same) backward_dot<scalar_t>(g.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), L, dot.data());
      else if (G.rows) backward_dot_mixed<scalar_t>(g.data_ptr<scalar_t>(), G, out.data_ptr<scalar_t>(), L, dot.data());
      else backward_dot_mixed<scalar_t>(out.data_ptr<scalar_t>(), L, g.data_ptr<scalar_t>(), G, dot.data());
      Tape<scalar_t> tp(tape.data_ptr<scalar_t>(), N, C, T);
      const scalar_t *A = tp.avg, *M = tp.mx, *SA = tp.sa, *S1 = tp.s1, *S2 = tp.s2, *Y1 = tp.y1, *Y2 = tp.y2,
                     *S3 = tp.s3, *Y = tp.y, *SC = tp.sc, *W0 = w0.data_ptr<scalar_t>(), *W1 = w1.data_ptr<scalar_t>(),
                     *WF = wf.data_ptr<scalar_t>();
      scalar_t* dP = dparams.data_ptr<scalar_t>();
      scalar_t *dW0 = dP, *dB0 = dP + C, *dW1 = dP + 2 * C, *dB1 = dP + 3 * C, *dWF = dP + 4 * C, *dBF = dP + 5 * C;
      scalar_t *SH = shift_dmax.data_ptr<scalar_t>(), *DM = SH + N * C * T;
      const scalar_t HW = static_cast<scalar_t>(L.HW);
      std::vector<scalar_t> dz(C), dz1(C), dz2(C), dsa(T * C), da(T * C), ds1(T), ds2(T);
      for (int64_t n = 0; n < N; ++n) {
        // d s = sum(g * x) = sum(g * out) / s; clamp's gradient; final stage
        double ds3 = 0;
        for (int64_t c = 0; c < C; ++c) {
          scalar_t s = SC[n * C + c];
          scalar_t dy = s > scalar_t(S_MIN) ? dot[n * C + c] / s : scalar_t(0);
          scalar_t yv = Y[n * C + c];
          dz[c] = dy * (1 - yv * yv);
          ds3 += dz[c] * Y1[n * C + c];
          dBF[c] += dz[c];
        }
        for (int64_t c = 0; c < C; ++c) {
          dWF[c] += static_cast<scalar_t>(ds3 * Y2[n * C + c]);
          scalar_t d_psi = dz[c] * S3[n], d_phi = static_cast<scalar_t>(ds3 * WF[c]);
          scalar_t v1 = Y1[n * C + c], v2 = Y2[n * C + c];
          dz1[c] = d_psi * (1 - v1 * v1); dz2[c] = d_phi * (1 - v2 * v2);
          dB0[c] += dz1[c]; dB1[c] += dz2[c];
        }
        // first-level stages, summed over time (Eq. 12): g = softmax(a) for both, f = a (v3) and m (v6)
        for (int64_t t = 0; t < T; ++t) {
          const scalar_t* q = SA + (n * T + t) * C;
          double e1d = 0, e2d = 0, dot_sa_d = 0;
          for (int64_t c = 0; c < C; ++c) { e1d += double(dz1[c]) * q[c]; e2d += double(dz2[c]) * q[c]; }
          const scalar_t e1 = static_cast<scalar_t>(e1d), e2 = static_cast<scalar_t>(e2d);
          ds1[t] = e1; ds2[t] = e2;
          for (int64_t c = 0; c < C; ++c) {
            dsa[t * C + c] = dz1[c] * S1[n * T + t] + dz2[c] * S2[n * T + t];
            dot_sa_d += double(dsa[t * C + c]) * q[c];
          }
          const scalar_t dot_sa = static_cast<scalar_t>(dot_sa_d);
          for (int64_t c = 0; c < C; ++c) {
            int64_t r = (n * C + c) * T + t;
            dW0[c] += e1 * A[r]; dW1[c] += e2 * M[r];
            scalar_t d_avg = e1 * W0[c] + q[c] * (dsa[t * C + c] - dot_sa);
            SH[r] = d_avg / (HW * (mean ? frames : 1));
            DM[r] = e2 * W1[c] / (mean ? frames : 1);
          }
        }
      }
      if (ctx->needs_input_grad(0))  // X needs no gradient (a frozen stem): no pass writing one
        backward_apply<scalar_t>(g.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), G, T, SC, SH,
                                 idx.data_ptr<int64_t>(), DM);
    });
    return {gx, dparams[0], dparams[1], dparams[2], dparams[3], dparams[4], dparams[5], Tensor()};
  }
};

Tensor cgd_v10(Tensor x, Tensor w0, Tensor b0, Tensor w1, Tensor b1, Tensor wf, Tensor bf, bool mean) {
  return CGDv10::apply(x, w0, b0, w1, b1, wf, bf, mean);
}

// s(X) alone, (N, C), outside autograd: evaluation's scale (x * s, or folded into the next BN by
// models/folding.py), from the same pools and descriptor as the forward, one read of X.
Tensor cgd_v10_scale(Tensor x, Tensor w0, Tensor b0, Tensor w1, Tensor b1, Tensor wf, Tensor bf, bool mean) {
  Layout L;
  TORCH_CHECK(layout_of(x, L), "cgd native: unsupported layout");
  auto opts = x.options();
  int64_t N = L.N, C = L.C, T = mean ? 1 : L.T;
  Tensor tape = at::empty({Tape<float>::size(N, C, T)}, opts);
  Tensor sc = at::empty({N, C}, opts);
  Tensor params[6] = {w0.detach().contiguous(), b0.detach().contiguous(), w1.detach().contiguous(),
                      b1.detach().contiguous(), wf.detach().contiguous(), bf.detach().contiguous()};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "cgd_scale", [&] {
    Tape<scalar_t> tp(tape.data_ptr<scalar_t>(), N, C, T);
    scale_of<false, scalar_t>(x.data_ptr<scalar_t>(), L, mean, params, tp, nullptr);
    std::copy(tp.sc, tp.sc + N * C, sc.data_ptr<scalar_t>());
  });
  return sc;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cgd_v10", &cgd_v10, "CGD v10, temporal shared (mean=False) or mean: x * s(x) with its backward (CPU)");
  m.def("cgd_v10_scale", &cgd_v10_scale, "CGD v10's scale s(x) as (N, C), no autograd (CPU evaluation)");
}
