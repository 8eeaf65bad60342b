// neurosim._snn chain kernels: a whole spiking conv network run per sample, fused.
//
// A "chain" is L blocks [Conv2d (stride 1) → spiking neuron] followed optionally by a linear
// head (Flatten → Linear). The input of every convolution is 0/1 spikes, held per sample as
// bit masks M[t][p][word] (bit c of word c/32 = channel c spikes at time t, pixel p); the
// large (T, B, C, H, W) float tensors of the layer-by-layer path are never built.
//
// Forward, per sample b (one thread per sample), per layer, per time step t:
//   scatter: every input spike (yi, xi, ci) adds the kernel wt[ci, :, :, :] into a
//            zero-bordered current buffer, so cur[y, x, :] = bias + Σ_{ky,kx} Σ_{ci spiking at
//            (t, y+ky−pad, x+kx−pad)} wt[ci, ky, kx, :]  (work ∝ spikes, no bounds checks);
//   membrane (row by row, as soon as a row's currents are complete, 8 channels per AVX2 op):
//            vp = v + k·((v_leak − v) + r·cur)     (no leak: v + k·(r·cur))
//            z  = [vp − v_th > 0];  v = z ? v_reset : vp   (subtract: v = z ? vp − v_th : vp)
// exactly the arithmetic (and, per output element, the summation order) of spike_conv_forward
// + neuron_forward, so spikes and membranes are bit-identical to the layer-by-layer path. The
// head adds W_head[:, (c, p)] for every spike of the last layer into out[t, b, :] (bias added
// by the caller).
//
// A forward with gradients keeps v'_t of every layer and the spike masks in a pooled buffer
// (handle returned to Python); the backward then runs per sample, per layer from the top
// (without a kept state, e.g. a second backward, it recomputes the forward of the sample):
//   g_spike  = Σ_o g_out[t, b, o]·W_head[o, (c, p)]  (or the given spike gradient)
//   LIF adjoint (neuron_backward's, t = T−1 … 0) → g_cur (stored zero-bordered, NHWC)
//   ∂L/∂b   += Σ g_cur;  ∂L/∂W[ci, ky, kx, :] += g_cur[t, y, x, :] for every input spike
//   g_in[t, yi, xi, ci] = Σ_{ky,kx,co} W[co, ci, ky, kx]·g_cur[t, yi−ky+pad, xi−kx+pad, co]
//   (dense, FMA, register-blocked) → the LIF adjoint of the layer below, and so on.
// Weight-gradient partial sums are kept per fixed block of samples (nblocks = min(B, 4)) and
// added in block order, so results do not depend on the thread count and are bit-identical
// from run to run. Scratch buffers persist between calls (no page faults on large fresh
// allocations, which cost more than the arithmetic on this machine).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <ctime>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <neurosim/simd.h>

#include "parallel.h"

namespace nb = nanobind;

// The chain is an x86 (AVX2, FMA, BMI2) fast path only: without NEUROSIM_X86 the module has no
// chain_forward and neurosim/snn/chain.py runs the layers one by one (the portable kernels).
#if NEUROSIM_X86
namespace chain {

using FArr = nb::ndarray<float, nb::c_contig, nb::device::cpu>;
using I64Arr = nb::ndarray<int64_t, nb::c_contig, nb::device::cpu>;

enum { SG_SUPERSPIKE = 0, SG_RECTANGLE = 1, SG_ARCTAN = 2 };
constexpr int NSPEC = 13;  // Cin H W Cout kh kw pad Ho Wo leak reset surrogate (unused)

struct Layer {
  int64_t Cin, H, W, Cout, kh, kw, pad, Ho, Wo;
  bool leak;
  int reset, sg;
  float alpha;
  const float* wt = nullptr;    // [Cin][kh][kw][Cout], kx reversed (kw−1−kx)
  const float* wb = nullptr;    // [kh][kw][Cout][Cin]  (backward)
  const float* bias = nullptr;  // [Cout]
  const float* np = nullptr;    // [5][Cout]: k, v_leak, r, v_th, v_reset
  int64_t HWi() const { return H * W; }
  int64_t HWo() const { return Ho * Wo; }
  int64_t nwi() const { return (Cin + 31) / 32; }
  int64_t nwo() const { return (Cout + 31) / 32; }
  int64_t Hp() const { return Ho + 2 * (kh - 1); }
  int64_t Wp() const { return Wo + 2 * (kw - 1); }
};

// ------------------------------------------------------------------ persistent scratch

template <typename V>
inline typename V::value_type* grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

inline float* align64(float* p) {
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t(63));
}

struct Workspace {
  std::vector<std::vector<uint32_t>> masks;  // per layer: its input masks [T][HWi][nwi]; masks[L] = last output
  std::vector<std::vector<float>> vp;        // per layer: v'_t [T][Cout/8][HWo][8] (64-byte aligned start)
  std::vector<float> gcur;                   // zero-bordered [T][Hp][Wp][Cout]
  std::vector<float> gin;                    // [T][HWi][Cin]
  std::vector<float> acc;                    // head accumulator [T][Op]
  std::vector<float> vfin;                   // [HWo][Cout]
  std::vector<float> cur;                    // zero-bordered currents of one step [Hp][Wp][Cout]
  std::vector<float> vmem;                   // membrane [HWo][Cout]
  std::vector<float> gvbuf;                  // adjoint state of one output row [Wo][32]
};

std::mutex g_mutex;
// Optional phase timers (thread 0 only), read and reset by chain_profile(on): thread CPU
// seconds in slots 0 conv1+LIF1 forward, 1 later layers' forward, 2 top LIF adjoint (with
// head), 3 first layer's LIF adjoint, 4 later weight gradients, 5 first weight gradient,
// 6 input gradients, 7 linear head forward.
double g_prof[8] = {0};
bool g_prof_on = false;
thread_local bool tl_prof = false;
inline double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
struct PTimer {  // thread CPU time (not wall time: the machine is shared)
  int slot; bool on; double t0 = 0;
  PTimer(int s, bool o) : slot(s), on(o) { if (on) t0 = thread_cpu_seconds(); }
  ~PTimer() { if (on) g_prof[slot] += thread_cpu_seconds() - t0; }
};
std::vector<std::unique_ptr<Workspace>> g_ws;
std::vector<float> g_partial;  // per sample block: all weight/bias gradients
std::mutex g_call_mutex;       // one chain call at a time (the per-thread scratch is shared)
std::vector<float> g_headw;    // head weight as [HWo][C][Op] (forward)
std::vector<float> g_headwt;   // head weight as [HWo][O][C] (backward)

Workspace& workspace(int tid) {
  std::lock_guard<std::mutex> lock(g_mutex);
  while ((int)g_ws.size() <= tid) g_ws.emplace_back(new Workspace());
  return *g_ws[tid];
}

using snn_parallel::parallel_for;

// Head weight W (O, C·HWo) (feature index c·HWo + p) into the kernels' pixel-major layouts.
void head_layout_forward(const float* W, int64_t O, int64_t Op, int64_t C, int64_t HWo, float* dst, int threads) {
  const int64_t F = C * HWo;
  parallel_for(HWo, threads, [&](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t c = 0; c < C; ++c) {
        float* d = dst + (p * C + c) * Op;
        for (int64_t o = 0; o < O; ++o) d[o] = W[o * F + c * HWo + p];
        for (int64_t o = O; o < Op; ++o) d[o] = 0.0f;
      }
  });
}

void head_layout_backward(const float* W, int64_t O, int64_t C, int64_t HWo, float* dst, int threads) {
  const int64_t F = C * HWo;
  parallel_for(HWo, threads, [&](int64_t p0, int64_t p1, int) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t c = 0; c < C; ++c) dst[(p * O + o) * C + c] = W[o * F + c * HWo + p];
  });
}


// ------------------------------------------------------------------------------ forward

// Input masks of layer 0 from the float spikes x (T, B, Cin, H, W).
void masks_from_input(const float* X, int64_t T, int64_t B, int64_t b, const Layer& L, uint32_t* M) {
  const int64_t HW = L.HWi(), nw = L.nwi();
  std::memset(M, 0, sizeof(uint32_t) * T * HW * nw);
  for (int64_t t = 0; t < T; ++t) {
    const float* s = X + (t * B + b) * L.Cin * HW;
    uint32_t* m = M + t * HW * nw;
    for (int64_t ci = 0; ci < L.Cin; ++ci) {
      const uint32_t bit = 1u << (ci & 31);
      const int64_t w = ci >> 5;
      const float* sc = s + ci * HW;
      for (int64_t p = 0; p < HW; ++p)
        if (sc[p] != 0.0f) m[p * nw + w] |= bit;
    }
  }
}

struct Head {
  const float* w = nullptr;   // forward [HWo][Cout][Op]
  const float* wt = nullptr;  // backward [HWo][Op][Cout]
  int64_t O = 0, Op = 0;
};

// Adds n vectors (N > 0: a compile-time count) of src into d.
template <int N>
__attribute__((target("avx2"), always_inline)) inline void add_vectors(float* d, const float* src, int64_t n) {
  const int64_t m = N > 0 ? N : n;
  for (int64_t q = 0; q < m; ++q)
    _mm256_storeu_ps(d + 8 * q, _mm256_add_ps(_mm256_loadu_ps(d + 8 * q), _mm256_loadu_ps(src + 8 * q)));
}

// Scatter of one step: every input spike (yi, xi, ci) adds the kernel of ci into CUR. With the
// kx-reversed weights wt[ci][ky][kw−1−kx][:], the kw taps of one kernel row are one
// contiguous run of kw·Cout floats both in the weights and in CUR.
template <int N>
__attribute__((target("avx2,bmi,bmi2"))) void scatter_step(const Layer& L, const uint32_t* mt, float* CUR, int64_t yi0,
                                                             int64_t yi1) {
  const int64_t nwi = L.nwi(), Cout = L.Cout, Wp = L.Wp(), tapstride = L.kh * L.kw * Cout;
  const int64_t run = L.kw * Cout / 8;
  for (int64_t yi = yi0; yi < yi1; ++yi)
    for (int64_t xi = 0; xi < L.W; ++xi) {
      const uint32_t* m = mt + (yi * L.W + xi) * nwi;
      // leftmost tap of the bottom kernel row: output (yi + pad − (kh−1), xi + pad − (kw−1)), padded
      float* base = CUR + ((yi + L.pad) * Wp + (xi + L.pad)) * Cout;
      for (int64_t w = 0; w < nwi; ++w) {
        uint32_t bits = m[w];
        while (bits) {
          const int64_t ci = w * 32 + _tzcnt_u32(bits);
          bits = _blsr_u32(bits);
          const float* wrow = L.wt + ci * tapstride;
          for (int64_t ky = 0; ky < L.kh; ++ky)
            add_vectors<N>(base + (L.kh - 1 - ky) * Wp * Cout, wrow + ky * L.kw * Cout, run);
        }
      }
    }
}

void scatter_any(const Layer& L, const uint32_t* mt, float* CUR, int64_t yi0, int64_t yi1) {
  switch (L.kw * L.Cout / 8) {
    case 3: return scatter_step<3>(L, mt, CUR, yi0, yi1);
    case 6: return scatter_step<6>(L, mt, CUR, yi0, yi1);
    case 12: return scatter_step<12>(L, mt, CUR, yi0, yi1);
    case 24: return scatter_step<24>(L, mt, CUR, yi0, yi1);
    default: return scatter_step<0>(L, mt, CUR, yi0, yi1);
  }
}

// Membrane update of output row y at step t (its currents in CUR are complete); CUR is reset
// to the bias for the next step.
__attribute__((target("avx2"))) void membrane_row(const Layer& L, int64_t t, int64_t y, float* CUR, float* V,
                                                  uint32_t* Mo, float* VP) {
  const int64_t HWo = L.HWo(), nwo = L.nwo(), Cout = L.Cout, Wp = L.Wp(), nvec = Cout / 8;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t q = 0; q < nvec; ++q) {  // one channel vector at a time: parameters in registers
    const int64_t ch = 8 * q;
    const __m256 k = _mm256_loadu_ps(L.np + 0 * Cout + ch), vl = _mm256_loadu_ps(L.np + 1 * Cout + ch);
    const __m256 r = _mm256_loadu_ps(L.np + 2 * Cout + ch), th = _mm256_loadu_ps(L.np + 3 * Cout + ch);
    const __m256 vr = _mm256_loadu_ps(L.np + 4 * Cout + ch), bias = _mm256_loadu_ps(L.bias + ch);
    const int shift = (int)(ch & 31);
    uint32_t* mo = Mo + t * HWo * nwo + (ch >> 5);
    float* vps = VP ? VP + (t * nvec + q) * HWo * 8 : nullptr;  // layout [t][c/8][p][8]
    float* c = CUR + ((y + L.kh - 1) * Wp + (L.kw - 1)) * Cout + ch;
    for (int64_t x = 0; x < L.Wo; ++x, c += Cout) {
      const int64_t p = y * L.Wo + x;
      const __m256 cur = _mm256_loadu_ps(c);
      _mm256_storeu_ps(c, bias);
      float* vrow = V + p * Cout + ch;
      const __m256 vm = _mm256_loadu_ps(vrow);
      const __m256 drive = _mm256_mul_ps(r, cur);
      const __m256 dv = L.leak ? _mm256_mul_ps(k, _mm256_add_ps(_mm256_sub_ps(vl, vm), drive)) : _mm256_mul_ps(k, drive);
      const __m256 vp = _mm256_add_ps(vm, dv);
      const __m256 d = _mm256_sub_ps(vp, th);
      const __m256 z = _mm256_cmp_ps(d, zero, _CMP_GT_OQ);
      if (vps) _mm256_stream_ps(vps + p * 8, vp);  // 32-byte aligned, read back much later
      _mm256_storeu_ps(vrow, _mm256_blendv_ps(vp, L.reset == 0 ? vr : d, z));
      mo[p * nwo] |= (uint32_t)_mm256_movemask_ps(z) << shift;
    }
  }
}

// Forward of one layer for one sample. Mi: input masks; Mo: output masks (zeroed here);
// VP: v' per (t, p, c) when non-null; acc: head accumulator when the head follows;
// vfin: final membrane [HWo][Cout]; spk: dense NCHW spike output (t stride) when non-null.
// Per time step the input spikes are scattered: every spike (yi, xi, ci) adds wt[ci, ky, kx, :]
// into the zero-bordered current buffer CUR [Hp][Wp][Cout] at (yi − ky + pad, xi − kx + pad)
// (no bounds checks; border cells are never read). For one output pixel the adds arrive in
// ascending input pixel (= tap) order and ascending channel, after the bias: the same order as
// the gather kernel of spike_conv_forward. Then the membrane pass reads CUR, resets it to the
// bias for the next step, and updates V [HWo][Cout].
__attribute__((target("avx2,bmi,bmi2"))) void layer_forward(const Layer& L, int64_t T, const uint32_t* Mi,
                                                              uint32_t* Mo, float* VP, const Head* head, float* acc,
                                                              float* vfin, float* spk, int64_t spk_tstride,
                                                              float* CUR, float* V) {
  const int64_t HWi = L.HWi(), HWo = L.HWo(), nwi = L.nwi(), nwo = L.nwo(), Cout = L.Cout;
  const int64_t Wp = L.Wp(), Hp = L.Hp();
  std::memset(Mo, 0, sizeof(uint32_t) * T * HWo * nwo);
  std::memset(CUR, 0, sizeof(float) * Hp * Wp * Cout);
  for (int64_t y = 0; y < L.Ho; ++y)
    for (int64_t x = 0; x < L.Wo; ++x) {
      float* c = CUR + ((y + L.kh - 1) * Wp + (x + L.kw - 1)) * Cout;
      std::memcpy(c, L.bias, sizeof(float) * Cout);
      for (int64_t q = 0; q < Cout; ++q) V[(y * L.Wo + x) * Cout + q] = L.np[1 * Cout + q];
    }
  // per step: scatter input rows one by one; an output row is complete (and goes through the
  // membrane update while its currents are still in L1) once input row y + kh − 1 − pad is in
  const int64_t lag = L.kh - 1 - L.pad;
  for (int64_t t = 0; t < T; ++t) {
    const uint32_t* mt = Mi + t * HWi * nwi;
    int64_t y = 0;
    for (int64_t yi = 0; yi < L.H; ++yi) {
      scatter_any(L, mt, CUR, yi, yi + 1);
      for (; y < L.Ho && y <= yi - lag; ++y) membrane_row(L, t, y, CUR, V, Mo, VP);
    }
    for (; y < L.Ho; ++y) membrane_row(L, t, y, CUR, V, Mo, VP);
  }
  PTimer ptm(7, g_prof_on && tl_prof && head != nullptr);
  if (head) {  // head: pixel outer, time inner (the weights of a pixel stay in L1)
    const int64_t Op = head->Op;
    for (int64_t p = 0; p < HWo; ++p)
      for (int64_t t = 0; t < T; ++t) {
        const uint32_t* mo = Mo + (t * HWo + p) * nwo;
        float* at = acc + t * Op;
        for (int64_t w = 0; w < nwo; ++w) {
          uint32_t bits = mo[w];
          while (bits) {
            const int64_t cc = w * 32 + _tzcnt_u32(bits);
            bits = _blsr_u32(bits);
            const float* wr = head->w + (p * Cout + cc) * Op;
            for (int64_t o = 0; o < Op; o += 8)
              _mm256_storeu_ps(at + o, _mm256_add_ps(_mm256_loadu_ps(at + o), _mm256_loadu_ps(wr + o)));
          }
        }
      }
  }
  if (spk)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t p = 0; p < HWo; ++p)
        for (int64_t w = 0; w < nwo; ++w) {
          uint32_t bits = Mo[(t * HWo + p) * nwo + w];
          while (bits) {
            const int64_t cc = w * 32 + _tzcnt_u32(bits);
            bits = _blsr_u32(bits);
            spk[t * spk_tstride + cc * HWo + p] = 1.0f;
          }
        }
  if (vfin) std::memcpy(vfin, V, sizeof(float) * HWo * Cout);
  if (VP) _mm_sfence();  // order the streaming stores of VP
}

int block_nv(int64_t Cout) { return Cout % 32 == 0 ? 4 : (Cout % 16 == 0 ? 2 : 1); }

std::vector<Layer> make_layers(I64Arr spec, FArr alpha, const std::vector<FArr>& wt, const std::vector<FArr>& bias,
                               const std::vector<FArr>& np, const std::vector<FArr>* wb) {
  const int64_t nl = spec.shape(0);
  const int64_t* S = spec.data();
  std::vector<Layer> layers(nl);
  for (int64_t l = 0; l < nl; ++l) {
    const int64_t* s = S + l * NSPEC;
    Layer& L = layers[l];
    L.Cin = s[0]; L.H = s[1]; L.W = s[2]; L.Cout = s[3]; L.kh = s[4]; L.kw = s[5]; L.pad = s[6];
    L.Ho = s[7]; L.Wo = s[8]; L.leak = s[9] != 0; L.reset = (int)s[10]; L.sg = (int)s[11];
    L.alpha = alpha.data()[l];
    L.wt = wt[l].data();
    L.bias = bias[l].data();
    L.np = np[l].data();
    if (wb) L.wb = (*wb)[l].data();
  }
  return layers;
}

// Runs the forward of all layers for sample b into the workspace (masks[l] = input masks of
// layer l, masks[L] = output of the last layer).
// Where the per-sample state goes: v'_t per layer (null: not kept) and the spike masks
// (masks[l] = input of layer l, masks[L] = output of the last layer).
struct SampleBufs {
  std::vector<float*> vp;
  std::vector<uint32_t*> masks;
};

int64_t vp_size(const Layer& L, int64_t T) { return (T * L.HWo() * L.Cout + 15) / 16 * 16; }
int64_t mask_in_size(const Layer& L, int64_t T) { return T * L.HWi() * L.nwi(); }
int64_t mask_out_size(const Layer& L, int64_t T) { return T * L.HWo() * L.nwo(); }

SampleBufs workspace_bufs(const std::vector<Layer>& layers, int64_t T, Workspace& ws, bool keep_vp) {
  const int64_t nl = (int64_t)layers.size();
  if ((int64_t)ws.masks.size() < nl + 1) ws.masks.resize(nl + 1);
  if ((int64_t)ws.vp.size() < nl) ws.vp.resize(nl);
  SampleBufs sb;
  for (int64_t l = 0; l < nl; ++l) {
    sb.vp.push_back(keep_vp ? align64(grow(ws.vp[l], vp_size(layers[l], T) + 16)) : nullptr);
    sb.masks.push_back(grow(ws.masks[l], mask_in_size(layers[l], T)));
  }
  sb.masks.push_back(grow(ws.masks[nl], mask_out_size(layers[nl - 1], T)));
  return sb;
}

// State kept from a forward pass with gradients for its backward pass: buffers from a pool
// that persists between calls (handle = index), released by the backward (or by Python when
// the autograd graph is dropped).
struct Saved {
  bool used = false;
  int64_t gen = 0;  // handle = index + (gen << 16): a stale handle never matches
  std::vector<std::vector<float>> vp;
  std::vector<std::vector<uint32_t>> masks;
  int64_t T = 0, B = 0;
};
std::vector<std::unique_ptr<Saved>> g_saved;

int64_t saved_acquire(const std::vector<Layer>& layers, int64_t T, int64_t B) {
  std::lock_guard<std::mutex> lock(g_mutex);
  int64_t h = 0;
  while (h < (int64_t)g_saved.size() && g_saved[h]->used) ++h;
  if (h == (int64_t)g_saved.size()) g_saved.emplace_back(new Saved());
  Saved& S = *g_saved[h];
  S.used = true;
  S.gen += 1;
  S.T = T;
  S.B = B;
  const int64_t nl = (int64_t)layers.size();
  S.vp.resize(nl);
  S.masks.resize(nl + 1);
  for (int64_t l = 0; l < nl; ++l) {
    grow(S.vp[l], B * vp_size(layers[l], T) + 16);
    grow(S.masks[l], B * mask_in_size(layers[l], T));
  }
  grow(S.masks[nl], B * mask_out_size(layers[nl - 1], T));
  return h + (S.gen << 16);
}

Saved* saved_get(int64_t handle, int64_t T, int64_t B) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (handle < 0) return nullptr;
  const int64_t h = handle & 0xffff, gen = handle >> 16;
  if (h >= (int64_t)g_saved.size()) return nullptr;
  Saved* S = g_saved[h].get();
  return (S->used && S->gen == gen && S->T == T && S->B == B) ? S : nullptr;
}

SampleBufs saved_bufs(const std::vector<Layer>& layers, Saved& S, int64_t b) {
  const int64_t nl = (int64_t)layers.size(), T = S.T;
  SampleBufs sb;
  for (int64_t l = 0; l < nl; ++l) {
    sb.vp.push_back(align64(S.vp[l].data()) + b * vp_size(layers[l], T));
    sb.masks.push_back(S.masks[l].data() + b * mask_in_size(layers[l], T));
  }
  sb.masks.push_back(S.masks[nl].data() + b * mask_out_size(layers[nl - 1], T));
  return sb;
}

void saved_release(int64_t handle) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (handle < 0) return;
  const int64_t h = handle & 0xffff, gen = handle >> 16;
  if (h < (int64_t)g_saved.size() && g_saved[h]->gen == gen) g_saved[h]->used = false;
}

void sample_forward(const std::vector<Layer>& layers, const float* X, int64_t T, int64_t B, int64_t b, Workspace& ws,
                    const SampleBufs& sb, const Head* head, float* out, const std::vector<float*>& vfinal,
                    float* spk_out, bool prof = false) {
  const int64_t nl = (int64_t)layers.size();
  tl_prof = prof;
  masks_from_input(X, T, B, b, layers[0], sb.masks[0]);
  float* acc = nullptr;
  if (head) {
    acc = grow(ws.acc, T * head->Op);
    std::fill(acc, acc + T * head->Op, 0.0f);
  }
  for (int64_t l = 0; l < nl; ++l) {
    const Layer& L = layers[l];
    const bool last = l == nl - 1;
    float* vf = vfinal.empty() ? nullptr : grow(ws.vfin, L.HWo() * L.Cout);
    float* spk = (last && spk_out) ? spk_out + b * L.Cout * L.HWo() : nullptr;
    float* CUR = grow(ws.cur, L.Hp() * L.Wp() * L.Cout);
    float* V = grow(ws.vmem, L.HWo() * L.Cout);
    {
      PTimer pt(l == 0 ? 0 : 1, g_prof_on && prof);
      layer_forward(L, T, sb.masks[l], sb.masks[l + 1], sb.vp[l], last ? head : nullptr, acc, vf, spk,
                    B * L.Cout * L.HWo(), CUR, V);
    }
    if (vf) {  // [HWo][Cout] -> (B, Cout, Ho, Wo)
      float* dst = vfinal[l] + b * L.Cout * L.HWo();
      for (int64_t p = 0; p < L.HWo(); ++p)
        for (int64_t c = 0; c < L.Cout; ++c) dst[c * L.HWo() + p] = vf[p * L.Cout + c];
    }
  }
  if (head && out)
    for (int64_t t = 0; t < T; ++t)
      std::memcpy(out + (t * B + b) * head->O, acc + t * head->Op, sizeof(float) * head->O);
}

// The linear head (head_out > 0) laid out for the forward ([HWo][Cout][Op], Op = O rounded up to
// 8) or the backward ([HWo][O][Cout]) pass, in the persistent buffers g_headw / g_headwt.
Head make_head(const FArr& head_w, int64_t head_out, const Layer& last, bool backward, int threads) {
  Head head;
  if (head_out <= 0) return head;
  head.O = head_out;
  head.Op = (head_out + 7) / 8 * 8;
  if (backward) {
    float* hwt = grow(g_headwt, last.HWo() * head.O * last.Cout);
    head_layout_backward(head_w.data(), head.O, last.Cout, last.HWo(), hwt, threads);
    head.wt = hwt;
  } else {
    float* hw = grow(g_headw, last.HWo() * last.Cout * head.Op);
    head_layout_forward(head_w.data(), head.O, head.Op, last.Cout, last.HWo(), hw, threads);
    head.w = hw;
  }
  return head;
}

// Returns a handle of the saved state when save is true (for chain_backward), else -1.
int64_t chain_forward(FArr x, I64Arr spec, FArr alpha, std::vector<FArr> wt, std::vector<FArr> bias,
                      std::vector<FArr> np, FArr head_w, int64_t head_out, FArr out, std::vector<FArr> vfinal,
                      int64_t T, int64_t B, int threads, bool save) {
  std::lock_guard<std::mutex> call_lock(g_call_mutex);
  std::vector<Layer> layers = make_layers(spec, alpha, wt, bias, np, nullptr);
  const bool has_head = head_out > 0;
  const Head head = make_head(head_w, head_out, layers.back(), /*backward=*/false, threads);
  std::vector<float*> vf;
  for (auto& a : vfinal) vf.push_back(a.data());
  float* O = out.data();
  if (!has_head) std::memset(O, 0, sizeof(float) * out.size());
  const float* X = x.data();
  const int64_t handle = save ? saved_acquire(layers, T, B) : -1;
  Saved* saved = save ? saved_get(handle, T, B) : nullptr;
  const int nthreads = std::max<int>(1, std::min<int64_t>(threads, B));
  for (int t = 0; t < nthreads; ++t) workspace(t);
  parallel_for(B, nthreads, [&](int64_t b0, int64_t b1, int tid) {
    Workspace& ws = *g_ws[tid];
    for (int64_t b = b0; b < b1; ++b) {
      const SampleBufs sb = saved ? saved_bufs(layers, *saved, b) : workspace_bufs(layers, T, ws, false);
      sample_forward(layers, X, T, B, b, ws, sb, has_head ? &head : nullptr, has_head ? O : nullptr, vf,
                     has_head ? nullptr : O, tid == 0);
    }
  });
  return handle;
}

// ----------------------------------------------------------------------------- backward

template <int SG>
__attribute__((target("avx2"))) inline __m256 surrogate_v(__m256 x, __m256 alpha, __m256 c1, __m256 c2) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 absx = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  if (SG == SG_SUPERSPIKE) {  // 1 / (alpha |x| + 1)^2
    const __m256 d = _mm256_add_ps(_mm256_mul_ps(alpha, absx), one);
    return _mm256_div_ps(one, _mm256_mul_ps(d, d));
  } else if (SG == SG_RECTANGLE) {  // c1 = 0.5 alpha, c2 = 1 / alpha
    return _mm256_and_ps(_mm256_cmp_ps(absx, c1, _CMP_LT_OQ), c2);
  } else {  // arctan: c1 = (pi/2) alpha, c2 = 0.5 alpha
    const __m256 u = _mm256_mul_ps(c1, x);
    return _mm256_div_ps(c2, _mm256_add_ps(one, _mm256_mul_ps(u, u)));
  }
}

// LIF adjoint of one layer for one sample: gradient at the spikes from GS ([T][HWo][Cout]) or
// from the head (g_out rows G[t][Op], weights head->wt), writes g_cur into the zero-bordered GC.
// Also adds the head weight gradient (per spike: dWh[p][c][:] += G[t][:]) and the bias gradient.
template <int NV, int SG>
__attribute__((target("avx2,fma,bmi,bmi2"))) void layer_backward_lif(const Layer& L, int64_t T, const float* VP,
                                                                       const float* GS, const Head* head,
                                                                       const float* G, const uint32_t* Mo,
                                                                       float* dWh, float* GC, float* db,
                                                                       float* gvbuf) {
  // Loop order: channel block, output row, t = T−1 … 0, pixel of the row; the adjoint state
  // g_v of one row lives in gvbuf [Wo][8·NV] (L1), so every step reads/writes contiguous rows.
  const int64_t HWo = L.HWo(), Cout = L.Cout, nwo = L.nwo(), Wp = L.Wp(), plane = L.Hp() * Wp;
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  __m256 alpha = _mm256_set1_ps(L.alpha), c1, c2;
  if (SG == SG_RECTANGLE) {
    c1 = _mm256_set1_ps(0.5f * L.alpha);
    c2 = _mm256_set1_ps(1.0f / L.alpha);
  } else {
    c1 = _mm256_set1_ps(1.5707963267948966f * L.alpha);
    c2 = _mm256_set1_ps(0.5f * L.alpha);
  }
  for (int64_t cb = 0; cb < Cout; cb += 8 * NV) {
    __m256 k[NV], r[NV], th[NV], vr[NV], omk[NV], dbias[NV];
    for (int v = 0; v < NV; ++v) {
      const int64_t c = cb + 8 * v;
      k[v] = _mm256_loadu_ps(L.np + 0 * Cout + c);
      r[v] = _mm256_loadu_ps(L.np + 2 * Cout + c);
      th[v] = _mm256_loadu_ps(L.np + 3 * Cout + c);
      vr[v] = _mm256_loadu_ps(L.np + 4 * Cout + c);
      omk[v] = _mm256_sub_ps(one, k[v]);
      dbias[v] = zero;
    }
    const uint32_t hmask = NV == 4 ? 0xffffffffu : ((1u << (8 * NV)) - 1);
    for (int64_t y = 0; y < L.Ho; ++y) {
      std::fill(gvbuf, gvbuf + L.Wo * 8 * NV, 0.0f);
      for (int64_t t = T - 1; t >= 0; --t) {
        const float* gt = head ? G + t * head->Op : nullptr;
        float* gc = GC + (t * plane + (y + L.kh - 1) * Wp + (L.kw - 1)) * Cout + cb;
        for (int64_t x = 0; x < L.Wo; ++x, gc += Cout) {
          const int64_t p = y * L.Wo + x;
          float* gvp_state = gvbuf + x * 8 * NV;
          __m256 gz[NV];
          if (head) {
            for (int v = 0; v < NV; ++v) gz[v] = zero;
            const float* wt = head->wt + p * head->O * Cout + cb;
            for (int64_t o = 0; o < head->O; ++o) {
              const __m256 go = _mm256_set1_ps(gt[o]);
              for (int v = 0; v < NV; ++v) gz[v] = _mm256_fmadd_ps(go, _mm256_loadu_ps(wt + o * Cout + 8 * v), gz[v]);
            }
            uint32_t bits = (Mo[(t * HWo + p) * nwo + (cb >> 5)] >> (cb & 31)) & hmask;
            while (bits) {  // head weight gradient: every spike (t, p, c) adds g_out[t, :]
              const int64_t c = cb + _tzcnt_u32(bits);
              bits = _blsr_u32(bits);
              float* d = dWh + (p * Cout + c) * head->Op;
              for (int64_t o = 0; o < head->Op; o += 8)
                _mm256_storeu_ps(d + o, _mm256_add_ps(_mm256_loadu_ps(d + o), _mm256_loadu_ps(gt + o)));
            }
          } else {
            for (int v = 0; v < NV; ++v) gz[v] = _mm256_loadu_ps(GS + (t * HWo + p) * Cout + cb + 8 * v);
          }
          const float* vpp = VP + ((t * (Cout / 8) + cb / 8) * HWo + p) * 8;
          for (int v = 0; v < NV; ++v) {
            const __m256 vp = _mm256_load_ps(vpp + 8 * v * HWo);
            const __m256 gv = _mm256_loadu_ps(gvp_state + 8 * v);
            const __m256 d = _mm256_sub_ps(vp, th[v]);
            __m256 gvp;
            __m256 g = gz[v];
            if (L.reset == 0) {
              g = _mm256_add_ps(g, _mm256_mul_ps(gv, _mm256_sub_ps(vr[v], vp)));
              const __m256 z = _mm256_cmp_ps(d, zero, _CMP_GT_OQ);
              gvp = _mm256_andnot_ps(z, gv);
            } else {
              g = _mm256_add_ps(g, _mm256_mul_ps(gv, _mm256_sub_ps(zero, th[v])));
              gvp = gv;
            }
            const __m256 sg = surrogate_v<SG>(d, alpha, c1, c2);
            gvp = _mm256_add_ps(gvp, _mm256_mul_ps(g, sg));
            const __m256 gdrive = _mm256_mul_ps(_mm256_mul_ps(gvp, k[v]), r[v]);
            _mm256_storeu_ps(gvp_state + 8 * v, L.leak ? _mm256_mul_ps(gvp, omk[v]) : gvp);
            _mm256_storeu_ps(gc + 8 * v, gdrive);
            dbias[v] = _mm256_add_ps(dbias[v], gdrive);
          }
        }
      }
    }
    for (int v = 0; v < NV; ++v)
      _mm256_storeu_ps(db + cb + 8 * v, _mm256_add_ps(_mm256_loadu_ps(db + cb + 8 * v), dbias[v]));
  }
}

template <int NV>
void lif_bwd_sg(int sg, const Layer& L, int64_t T, const float* VP, const float* GS, const Head* head, const float* G,
                const uint32_t* Mo, float* dWh, float* GC, float* db, float* gvbuf) {
  if (sg == SG_SUPERSPIKE)
    layer_backward_lif<NV, SG_SUPERSPIKE>(L, T, VP, GS, head, G, Mo, dWh, GC, db, gvbuf);
  else if (sg == SG_RECTANGLE)
    layer_backward_lif<NV, SG_RECTANGLE>(L, T, VP, GS, head, G, Mo, dWh, GC, db, gvbuf);
  else
    layer_backward_lif<NV, SG_ARCTAN>(L, T, VP, GS, head, G, Mo, dWh, GC, db, gvbuf);
}

void lif_bwd_any(const Layer& L, int64_t T, const float* VP, const float* GS, const Head* head, const float* G,
                 const uint32_t* Mo, float* dWh, float* GC, float* db, float* gvbuf) {
  const int nv = block_nv(L.Cout);
  if (nv == 4)
    lif_bwd_sg<4>(L.sg, L, T, VP, GS, head, G, Mo, dWh, GC, db, gvbuf);
  else if (nv == 2)
    lif_bwd_sg<2>(L.sg, L, T, VP, GS, head, G, Mo, dWh, GC, db, gvbuf);
  else
    lif_bwd_sg<1>(L.sg, L, T, VP, GS, head, G, Mo, dWh, GC, db, gvbuf);
}

// Zero the border of the zero-bordered gradient buffer (interior is fully overwritten).
void zero_border(const Layer& L, int64_t T, float* GC) {
  const int64_t Hp = L.Hp(), Wp = L.Wp(), C = L.Cout, by = L.kh - 1, bx = L.kw - 1;
  for (int64_t t = 0; t < T; ++t) {
    float* g = GC + t * Hp * Wp * C;
    if (by > 0) {
      std::memset(g, 0, sizeof(float) * by * Wp * C);
      std::memset(g + (Hp - by) * Wp * C, 0, sizeof(float) * by * Wp * C);
    }
    if (bx > 0)
      for (int64_t y = by; y < Hp - by; ++y) {
        std::memset(g + y * Wp * C, 0, sizeof(float) * bx * C);
        std::memset(g + (y * Wp + Wp - bx) * C, 0, sizeof(float) * bx * C);
      }
  }
}

// Weight gradient: for every input spike (t, yi, xi, ci) and tap, dW[ci, ky, kx, :] += g_cur at
// (t, yi − ky + pad, xi − kx + pad) (read from the zero-bordered buffer: no bounds checks).
template <int N>
__attribute__((target("avx2,bmi,bmi2"))) void layer_wgrad_t(const Layer& L, int64_t T, const uint32_t* Mi,
                                                              const float* GC, float* dW) {
  // dW in kx-reversed layout [ci][ky][kw−1−kx][:]: the kw taps of a kernel row are contiguous,
  // and so are the gradients they read (one run of kw·Cout floats).
  const int64_t HWi = L.HWi(), nwi = L.nwi(), C = L.Cout, Wp = L.Wp(), plane = L.Hp() * Wp;
  const int64_t run = L.kw * C / 8;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t yi = 0; yi < L.H; ++yi)
      for (int64_t xi = 0; xi < L.W; ++xi) {
        const uint32_t* m = Mi + (t * HWi + yi * L.W + xi) * nwi;
        const float* gbase = GC + (t * plane + (yi + L.pad) * Wp + (xi + L.pad)) * C;
        for (int64_t w = 0; w < nwi; ++w) {
          uint32_t bits = m[w];
          while (bits) {
            const int64_t ci = w * 32 + _tzcnt_u32(bits);
            bits = _blsr_u32(bits);
            float* drow = dW + ci * L.kh * L.kw * C;
            for (int64_t ky = 0; ky < L.kh; ++ky)
              add_vectors<N>(drow + ky * L.kw * C, gbase + (L.kh - 1 - ky) * Wp * C, run);
          }
        }
      }
}

void layer_wgrad(const Layer& L, int64_t T, const uint32_t* Mi, const float* GC, float* dW) {
  switch (L.kw * L.Cout / 8) {
    case 3: return layer_wgrad_t<3>(L, T, Mi, GC, dW);
    case 6: return layer_wgrad_t<6>(L, T, Mi, GC, dW);
    case 12: return layer_wgrad_t<12>(L, T, Mi, GC, dW);
    case 24: return layer_wgrad_t<24>(L, T, Mi, GC, dW);
    default: return layer_wgrad_t<0>(L, T, Mi, GC, dW);
  }
}

// Input gradient (dense): GI[t][yi][xi][ci] = Σ_{ky,kx,co} wb[ky][kx][co][ci] · GC(t, yi+pad+kh−1−ky, xi+pad+kw−1−kx, co),
// NPX pixels × NV·8 input channels in registers.
template <int NV, int NPX>
__attribute__((target("avx2,fma"), always_inline)) inline void igrad_px(const Layer& L, const float* GCrow0,
                                                                         float* GI, int64_t cib) {
  const int64_t C = L.Cout, Cin = L.Cin, Wp = L.Wp();
  __m256 acc[NPX][NV];
  for (int j = 0; j < NPX; ++j)
    for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_setzero_ps();
  for (int64_t ky = 0; ky < L.kh; ++ky)
    for (int64_t kx = 0; kx < L.kw; ++kx) {
      const float* g = GCrow0 - (ky * Wp + kx) * C;
      const float* w = L.wb + (ky * L.kw + kx) * C * Cin + cib;
      for (int64_t co = 0; co < C; ++co) {
        __m256 wv[NV];
        for (int v = 0; v < NV; ++v) wv[v] = _mm256_loadu_ps(w + co * Cin + 8 * v);
        for (int j = 0; j < NPX; ++j) {
          const __m256 gb = _mm256_broadcast_ss(g + j * C + co);
          for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_fmadd_ps(gb, wv[v], acc[j][v]);
        }
      }
    }
  for (int j = 0; j < NPX; ++j)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(GI + j * Cin + cib + 8 * v, acc[j][v]);
}

template <int NV, int NPX>
__attribute__((target("avx2,fma"))) void layer_igrad(const Layer& L, int64_t T, const float* GC, float* GI) {
  const int64_t C = L.Cout, Cin = L.Cin, Wp = L.Wp(), plane = L.Hp() * Wp;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t yi = 0; yi < L.H; ++yi)
      for (int64_t cib = 0; cib < Cin; cib += 8 * NV) {
        int64_t xi = 0;
        auto at = [&](int64_t xx) {
          return GC + (t * plane + (yi + L.pad + L.kh - 1) * Wp + (xx + L.pad + L.kw - 1)) * C;
        };
        float* gi = GI + (t * L.HWi() + yi * L.W) * Cin;
        for (; xi + NPX <= L.W; xi += NPX) igrad_px<NV, NPX>(L, at(xi), gi + xi * Cin, cib);
        // the rest of the row in one block (register blocking matters: 1 pixel runs at ~1/3 speed)
        switch (L.W - xi) {
          case 0: break;
          case 1: igrad_px<NV, 1>(L, at(xi), gi + xi * Cin, cib); break;
          case 2: igrad_px<NV, (NPX > 2 ? 2 : 1)>(L, at(xi), gi + xi * Cin, cib); if (NPX <= 2) igrad_px<NV, 1>(L, at(xi + 1), gi + (xi + 1) * Cin, cib); break;
          default: {
            const int64_t rem = L.W - xi;
            int64_t done = 0;
            if (NPX > 4 && rem - done >= 4) { igrad_px<NV, (NPX > 4 ? 4 : 1)>(L, at(xi + done), gi + (xi + done) * Cin, cib); done += NPX > 4 ? 4 : 1; }
            if (NPX > 2 && rem - done >= 2) { igrad_px<NV, (NPX > 2 ? 2 : 1)>(L, at(xi + done), gi + (xi + done) * Cin, cib); done += NPX > 2 ? 2 : 1; }
            for (; done < rem; ++done) igrad_px<NV, 1>(L, at(xi + done), gi + (xi + done) * Cin, cib);
          }
        }
      }
}

void igrad_any(const Layer& L, int64_t T, const float* GC, float* GI) {
  if (L.Cin % 32 == 0)
    layer_igrad<4, 2>(L, T, GC, GI);
  else if (L.Cin % 16 == 0)
    layer_igrad<2, 6>(L, T, GC, GI);
  else
    layer_igrad<1, 12>(L, T, GC, GI);
}

// chain_backward: gradients of all conv weights/biases (and of the head weight) for the
// output gradient g (head: (T, B, O); else spike gradient (T, B, C, Ho, Wo)).
// head_w: the head weight (O, C·HWo); dwt[l]: [Cin][kh][kw][Cout] with kx reversed (kw−1−kx);
// dbias[l]: [Cout]; dhead: (O, C·HWo).
void chain_backward(FArr x, I64Arr spec, FArr alpha, std::vector<FArr> wt, std::vector<FArr> wb,
                    std::vector<FArr> bias, std::vector<FArr> np, FArr head_w, int64_t head_out,
                    FArr g, std::vector<FArr> dwt, std::vector<FArr> dbias, FArr dhead, int64_t T, int64_t B,
                    int threads, int64_t handle) {
  std::lock_guard<std::mutex> call_lock(g_call_mutex);
  std::vector<Layer> layers = make_layers(spec, alpha, wt, bias, np, &wb);
  const int64_t nl = (int64_t)layers.size();
  const bool has_head = head_out > 0;
  const Head head = make_head(head_w, head_out, layers.back(), /*backward=*/true, threads);
  // offsets of each gradient inside one block's partial buffer
  std::vector<int64_t> off_w(nl), off_b(nl);
  int64_t total = 0;
  for (int64_t l = 0; l < nl; ++l) {
    off_w[l] = total;
    total += layers[l].Cin * layers[l].kh * layers[l].kw * layers[l].Cout;
    off_b[l] = total;
    total += layers[l].Cout;
  }
  const int64_t off_h = total;
  const Layer& Ll = layers[nl - 1];
  if (has_head) total += Ll.HWo() * Ll.Cout * head.Op;
  total = (total + 15) / 16 * 16;
  const int64_t nblocks = std::min<int64_t>(B, 4);
  const int64_t per = (B + nblocks - 1) / nblocks;
  float* part = grow(g_partial, (size_t)(nblocks * total));
  const float* X = x.data();
  const float* Gp = g.data();
  const int nthreads = std::max<int>(1, std::min<int64_t>(threads, nblocks));
  for (int t = 0; t < nthreads; ++t) workspace(t);
  const std::vector<float*> no_vfinal;
  Saved* saved = saved_get(handle, T, B);
  parallel_for(nblocks, nthreads, [&](int64_t k0, int64_t k1, int tid) {
    Workspace& ws = *g_ws[tid];
    std::vector<float> grow_rows;
    for (int64_t kb = k0; kb < k1; ++kb) {
      float* P = part + kb * total;
      std::fill(P, P + total, 0.0f);
      for (int64_t b = kb * per; b < std::min(B, (kb + 1) * per); ++b) {
        const SampleBufs sb = saved ? saved_bufs(layers, *saved, b) : workspace_bufs(layers, T, ws, true);
        if (!saved) sample_forward(layers, X, T, B, b, ws, sb, nullptr, nullptr, no_vfinal, nullptr, tid == 0);
        // gradient rows of this sample (head) or spike gradients of the last layer ([T][HWo][C])
        const float* Grows = nullptr;
        const float* GS = nullptr;
        if (has_head) {
          float* rows = grow(grow_rows, T * head.Op);
          std::fill(rows, rows + T * head.Op, 0.0f);
          for (int64_t t = 0; t < T; ++t) std::memcpy(rows + t * head.Op, Gp + (t * B + b) * head.O, sizeof(float) * head.O);
          Grows = rows;
        } else {
          float* gs = grow(ws.gin, T * Ll.HWo() * Ll.Cout);
          const int64_t HWo = Ll.HWo(), C = Ll.Cout;
          for (int64_t t = 0; t < T; ++t) {
            const float* src = Gp + (t * B + b) * C * HWo;
            for (int64_t c = 0; c < C; ++c)
              for (int64_t p = 0; p < HWo; ++p) gs[(t * HWo + p) * C + c] = src[c * HWo + p];
          }
          GS = gs;
        }
        for (int64_t l = nl - 1; l >= 0; --l) {
          const Layer& L = layers[l];
          float* GC = grow(ws.gcur, T * L.Hp() * L.Wp() * L.Cout);
          zero_border(L, T, GC);
          const bool top = l == nl - 1;
          const bool pr = g_prof_on && tid == 0;
          {
            PTimer pt(2 + (l == 0), pr);
            lif_bwd_any(L, T, sb.vp[l], top ? GS : ws.gin.data(), top && has_head ? &head : nullptr, Grows,
                        sb.masks[l + 1], P + off_h, GC, P + off_b[l], grow(ws.gvbuf, L.Wo * 32));
          }
          {
            PTimer pt(4 + (l == 0), pr);
            layer_wgrad(L, T, sb.masks[l], GC, P + off_w[l]);
          }
          PTimer pt(6, pr);
          if (l > 0) igrad_any(L, T, GC, grow(ws.gin, T * L.HWi() * L.Cin));
        }
      }
    }
  });
  // add the block partials in block order (parallel over elements: the order per element is fixed)
  std::vector<float*> dst;
  std::vector<int64_t> dst_off, dst_len;
  for (int64_t l = 0; l < nl; ++l) {
    dst.push_back(dwt[l].data()); dst_off.push_back(off_w[l]); dst_len.push_back((int64_t)dwt[l].size());
    dst.push_back(dbias[l].data()); dst_off.push_back(off_b[l]); dst_len.push_back((int64_t)dbias[l].size());
  }
  if (has_head) {  // [HWo][C][Op] partials -> dhead (O, C·HWo), blocks added in order
    const int64_t C = Ll.Cout, HWo = Ll.HWo(), F = C * HWo, Op = head.Op;
    float* D = dhead.data();
    parallel_for(HWo, threads, [&](int64_t p0, int64_t p1, int) {
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t o = 0; o < head.O; ++o) {
            const int64_t e = off_h + (p * C + c) * Op + o;
            float sum = part[e];
            for (int64_t kb = 1; kb < nblocks; ++kb) sum += part[kb * total + e];
            D[o * F + c * HWo + p] = sum;
          }
    });
  }
  for (size_t q = 0; q < dst.size(); ++q) {
    float* D = dst[q];
    const int64_t o = dst_off[q], n = dst_len[q];
    parallel_for(n >= 65536 ? 2 : 1, threads, [&](int64_t h0, int64_t h1, int) {
      for (int64_t h = h0; h < h1; ++h) {
        const int64_t lo = n * h / (n >= 65536 ? 2 : 1), hi = n * (h + 1) / (n >= 65536 ? 2 : 1);
        std::memcpy(D + lo, part + o + lo, sizeof(float) * (hi - lo));
        for (int64_t kb = 1; kb < nblocks; ++kb) {
          const float* S = part + kb * total + o;
          for (int64_t e = lo; e < hi; ++e) D[e] += S[e];
        }
      }
    });
  }
}

void release_scratch() {  // frees the per-thread scratch and the unused saved-state buffers
  std::lock_guard<std::mutex> call_lock(g_call_mutex);
  std::lock_guard<std::mutex> lock(g_mutex);
  g_ws.clear();
  std::vector<float>().swap(g_headw);
  std::vector<float>().swap(g_headwt);
  for (auto& S : g_saved)
    if (!S->used) {
      std::vector<std::vector<float>>().swap(S->vp);
      std::vector<std::vector<uint32_t>>().swap(S->masks);
    }
  std::vector<float>().swap(g_partial);
}

}  // namespace chain

namespace chain {
bool supported() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  return ok;
}
}  // namespace chain

std::vector<double> chain_profile(bool on) {
  std::vector<double> r(chain::g_prof, chain::g_prof + 8);
  std::fill(chain::g_prof, chain::g_prof + 8, 0.0);
  chain::g_prof_on = on;
  return r;
}

#endif  // NEUROSIM_X86

void register_chain(nb::module_& m) {
#if NEUROSIM_X86
  m.def("chain_profile", &chain_profile);
  m.def("chain_supported", &chain::supported);
  m.def("chain_forward", &chain::chain_forward, nb::call_guard<nb::gil_scoped_release>());
  m.def("chain_backward", &chain::chain_backward, nb::call_guard<nb::gil_scoped_release>());
  m.def("chain_release_scratch", &chain::release_scratch);
  m.def("chain_release_saved", &chain::saved_release);
#else
  m.def("chain_supported", []() { return false; });
#endif
}
