// neurosim._snn: fused multi-step neuron recurrence and binary-spike convolution kernels.
//
// All buffers are allocated by the Python side (neurosim/snn/fused.py) and passed in as
// contiguous CPU arrays; the kernels only fill them. The float arithmetic follows the torch
// step function of neurosim/snn/neurons.py operation by operation (same order, no FMA: the
// build uses -ffp-contract=off), so the fused path and the step path give identical values.
//
// Neuron (per element j of a step, channel c = (j / S) % C):
//   syn:     inew = i + x;  drive = inew;  i = inew + nks * inew      (nks = -dt / tau_syn)
//   else:    drive = x
//   refractory (cnt > 0): drive = 0, no spike
//   leak:    vp = v + k * ((vl - v) + r * drive)                      (k = dt / tau_mem)
//   no leak: vp = v + k * (r * drive)
//   spike:   z = vp - th > 0;  reset value: v = z ? v_reset : vp;  subtract: v = z ? vp - th : vp
//   non-spiking (LI): out = vp, v = vp
//   cnt = z ? refractory_steps : max(cnt - 1, 0)
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include <neurosim/simd.h>

#include "parallel.h"

namespace nb = nanobind;

using FArr = nb::ndarray<float, nb::c_contig, nb::device::cpu>;
using U8Arr = nb::ndarray<uint8_t, nb::c_contig, nb::device::cpu>;
using I32Arr = nb::ndarray<int32_t, nb::c_contig, nb::device::cpu>;
using DArr = nb::ndarray<double, nb::c_contig, nb::device::cpu>;

namespace {

enum Param { K = 0, VL = 1, R = 2, TH = 3, VR = 4, NKS = 5, NPARAM = 6 };
enum Reset { RESET_VALUE = 0, RESET_SUBTRACT = 1 };
enum Surrogate { SG_SUPERSPIKE = 0, SG_RECTANGLE = 1, SG_ARCTAN = 2, SG_SIGMOID = 3 };

struct NeuronConfig {
  int64_t T, N, C, S;
  bool syn, leak, spiking;
  int reset;
  int refractory;
};

using snn_parallel::parallel_for;

inline float surrogate(int kind, float x, float alpha) {
  switch (kind) {
    case SG_SUPERSPIKE: {  // norse "super": 1 / (alpha |x| + 1)^2
      float d = alpha * std::fabs(x) + 1.0f;
      return 1.0f / (d * d);
    }
    case SG_RECTANGLE:  // STBP: 1/a on |x| < a/2
      return std::fabs(x) < 0.5f * alpha ? 1.0f / alpha : 0.0f;
    case SG_ARCTAN: {  // alpha/2 / (1 + (pi/2 alpha x)^2)
      float u = 1.5707963267948966f * alpha * x;
      return 0.5f * alpha / (1.0f + u * u);
    }
    default: {  // sigmoid: alpha s (1 - s), s = sigmoid(alpha x)
      float s = 1.0f / (1.0f + std::exp(-alpha * x));
      return alpha * s * (1.0f - s);
    }
  }
}

bool have_avx2();

// ------------------------------------------------------------- vectorizable fast paths
// Without a refractory period every element of a segment shares one channel's parameters and
// the update is branch-free, so the inner loops vectorize (AVX2 when the CPU has it). The
// arithmetic is exactly that of the generic loop above.

template <bool SYN, bool LEAK, bool SPIKING, bool SUB>
inline void fwd_segment(const float* X, float* O, float* VP, float* IP, float* V, float* I, int64_t j0, int64_t len,
                        int64_t T, int64_t N, float k, float vl, float r, float th, float vr, float nks) {
  for (int64_t t = 0; t < T; ++t) {
    const float* __restrict x = X + t * N + j0;
    float* __restrict o = O + t * N + j0;
    float* __restrict vps = VP ? VP + t * N + j0 : nullptr;
    float* __restrict ips = IP ? IP + t * N + j0 : nullptr;
    float* __restrict v = V + j0;
    float* __restrict ic = SYN ? I + j0 : nullptr;
    for (int64_t q = 0; q < len; ++q) {
      float drive = x[q];
      if (SYN) {
        float inew = ic[q] + drive;
        drive = inew;
        float di = nks * inew;
        ic[q] = inew + di;
        if (ips) ips[q] = inew;
      }
      const float vold = v[q];
      const float dv = LEAK ? k * ((vl - vold) + r * drive) : k * (r * drive);
      const float vpq = vold + dv;
      if (vps) vps[q] = vpq;
      if (!SPIKING) {
        o[q] = vpq;
        v[q] = vpq;
      } else {
        const bool z = vpq - th > 0.0f;
        o[q] = z ? 1.0f : 0.0f;
        v[q] = z ? (SUB ? vpq - th : vr) : vpq;
      }
    }
  }
}

template <bool SYN, bool LEAK, bool SPIKING, bool SUB>
NEUROSIM_TARGET("avx2") __attribute__((flatten)) void fwd_segment_avx2(const float* X, float* O, float* VP, float* IP, float* V,
                                                               float* I, int64_t j0, int64_t len, int64_t T, int64_t N,
                                                               float k, float vl, float r, float th, float vr, float nks) {
  fwd_segment<SYN, LEAK, SPIKING, SUB>(X, O, VP, IP, V, I, j0, len, T, N, k, vl, r, th, vr, nks);
}

template <bool SYN, bool LEAK, bool SPIKING, bool SUB>
__attribute__((flatten)) void fwd_segment_plain(const float* X, float* O, float* VP, float* IP, float* V, float* I,
                                                int64_t j0, int64_t len, int64_t T, int64_t N, float k, float vl,
                                                float r, float th, float vr, float nks) {
  fwd_segment<SYN, LEAK, SPIKING, SUB>(X, O, VP, IP, V, I, j0, len, T, N, k, vl, r, th, vr, nks);
}

using FwdFn = void (*)(const float*, float*, float*, float*, float*, float*, int64_t, int64_t, int64_t, int64_t, float,
                       float, float, float, float, float);

template <bool SYN, bool LEAK, bool SPIKING, bool SUB>
FwdFn pick_fwd4(bool avx) {
  return avx ? &fwd_segment_avx2<SYN, LEAK, SPIKING, SUB> : &fwd_segment_plain<SYN, LEAK, SPIKING, SUB>;
}

FwdFn pick_fwd(bool syn, bool leak, bool spiking, bool sub, bool avx) {
  const int key = (syn << 3) | (leak << 2) | (spiking << 1) | int(sub);
  switch (key) {
    case 0: return pick_fwd4<false, false, false, false>(avx);
    case 1: return pick_fwd4<false, false, false, true>(avx);
    case 2: return pick_fwd4<false, false, true, false>(avx);
    case 3: return pick_fwd4<false, false, true, true>(avx);
    case 4: return pick_fwd4<false, true, false, false>(avx);
    case 5: return pick_fwd4<false, true, false, true>(avx);
    case 6: return pick_fwd4<false, true, true, false>(avx);
    case 7: return pick_fwd4<false, true, true, true>(avx);
    case 8: return pick_fwd4<true, false, false, false>(avx);
    case 9: return pick_fwd4<true, false, false, true>(avx);
    case 10: return pick_fwd4<true, false, true, false>(avx);
    case 11: return pick_fwd4<true, false, true, true>(avx);
    case 12: return pick_fwd4<true, true, false, false>(avx);
    case 13: return pick_fwd4<true, true, false, true>(avx);
    case 14: return pick_fwd4<true, true, true, false>(avx);
    default: return pick_fwd4<true, true, true, true>(avx);
  }
}

// Segments: runs of elements with one channel. C == 1: the whole step cut into 4096-pieces.
struct Segment {
  int64_t j0, len, c;
};

std::vector<Segment> make_segments(int64_t N, int64_t C, int64_t S) {
  std::vector<Segment> segs;
  if (C == 1) {
    for (int64_t j = 0; j < N; j += 4096) segs.push_back({j, std::min<int64_t>(4096, N - j), 0});
  } else {
    for (int64_t q = 0; q * S < N; ++q) segs.push_back({q * S, S, q % C});
  }
  return segs;
}

// ---------------------------------------------------------------------------- neuron forward

void neuron_forward(FArr x, FArr out, FArr vpre, FArr ipre, U8Arr refmask, FArr v, FArr i, I32Arr cnt,
                    FArr params, int64_t C, int64_t S, bool syn, bool leak, bool spiking, int reset,
                    int refractory, int threads) {
  const int64_t N = v.shape(0);
  const int64_t T = x.shape(0) / std::max<int64_t>(N, 1);
  const float* X = x.data();
  float* O = out.data();
  float* VP = vpre.size() ? vpre.data() : nullptr;
  float* IP = ipre.size() ? ipre.data() : nullptr;
  uint8_t* RM = refmask.size() ? refmask.data() : nullptr;
  float* V = v.data();
  float* I = i.size() ? i.data() : nullptr;
  int32_t* CN = cnt.size() ? cnt.data() : nullptr;
  const float* P = params.data();
  if (!CN) {
    const FwdFn fn = pick_fwd(syn, leak, spiking, reset == RESET_SUBTRACT, have_avx2());
    const std::vector<Segment> segs = make_segments(N, C, S);
    parallel_for((int64_t)segs.size(), threads, [&](int64_t s0, int64_t s1, int) {
      for (int64_t q = s0; q < s1; ++q) {
        const Segment& sg = segs[q];
        const int64_t c = sg.c;
        fn(X, O, VP, IP, V, I, sg.j0, sg.len, T, N, P[K * C + c], P[VL * C + c], P[R * C + c], P[TH * C + c],
           P[VR * C + c], syn ? P[NKS * C + c] : 0.0f);
      }
    });
    return;
  }
  const int64_t block = 2048;
  const int64_t nblocks = (N + block - 1) / block;
  parallel_for(nblocks, threads, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * block, hi = std::min(N, lo + block);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t base = t * N;
        for (int64_t j = lo; j < hi; ++j) {
          const int64_t c = (j / S) % C;
          const float k = P[K * C + c], vl = P[VL * C + c], r = P[R * C + c], th = P[TH * C + c];
          float drive = X[base + j];
          if (syn) {
            float inew = I[j] + drive;
            drive = inew;
            float di = P[NKS * C + c] * inew;
            I[j] = inew + di;
            if (IP) IP[base + j] = inew;
          }
          bool ref = false;
          if (CN) {
            ref = CN[j] > 0;
            if (ref) drive = 0.0f;
            if (RM) RM[base + j] = ref;
          }
          const float vold = V[j];
          float dv = leak ? k * ((vl - vold) + r * drive) : k * (r * drive);
          float vp = vold + dv;
          if (VP) VP[base + j] = vp;
          if (!spiking) {
            O[base + j] = vp;
            V[j] = vp;
            continue;
          }
          bool z = (vp - th > 0.0f) && !ref;
          O[base + j] = z ? 1.0f : 0.0f;
          if (reset == RESET_VALUE)
            V[j] = z ? P[VR * C + c] : vp;
          else
            V[j] = z ? vp - th : vp;
          if (CN) CN[j] = z ? refractory : std::max(CN[j] - 1, 0);
        }
      }
    }
  });
}


template <int SG>
inline float surrogate_t(float x, float alpha) {
  if (SG == SG_SUPERSPIKE) {
    float d = alpha * std::fabs(x) + 1.0f;
    return 1.0f / (d * d);
  } else if (SG == SG_RECTANGLE) {
    return std::fabs(x) < 0.5f * alpha ? 1.0f / alpha : 0.0f;
  } else if (SG == SG_ARCTAN) {
    float u = 1.5707963267948966f * alpha * x;
    return 0.5f * alpha / (1.0f + u * u);
  } else {
    float s = 1.0f / (1.0f + std::exp(-alpha * x));
    return alpha * s * (1.0f - s);
  }
}

// Backward of one segment (no refractory period, no learnable leak); ath collects −∂L/∂v_th
// contributions per element (summed by the caller).
template <bool SYN, bool LEAK, bool SPIKING, bool SUB, int SG>
inline void bwd_segment(const float* G, const float* VPa, float* GXa, int64_t j0, int64_t len, int64_t T, int64_t N,
                        float k, float r, float th, float vr, float nks, float alpha, float* __restrict gv,
                        float* __restrict gi, float* __restrict ath) {
  for (int64_t q = 0; q < len; ++q) gv[q] = gi[q] = ath[q] = 0.0f;
  for (int64_t t = T - 1; t >= 0; --t) {
    const float* __restrict g = G + t * N + j0;
    const float* __restrict vpa = VPa + t * N + j0;
    float* __restrict gx = GXa + t * N + j0;
    for (int64_t q = 0; q < len; ++q) {
      const float vp = vpa[q];
      const float gvn = gv[q];
      float gvp;
      if (SPIKING) {
        const bool z = vp - th > 0.0f;
        float gz = g[q];
        if (!SUB) {
          gz += gvn * (vr - vp);
          gvp = z ? 0.0f : gvn;
        } else {
          gz += gvn * (-th);
          gvp = gvn;
          ath[q] -= z ? gvn : 0.0f;
        }
        const float sg = surrogate_t<SG>(vp - th, alpha);
        gvp += gz * sg;
        ath[q] -= gz * sg;
      } else {
        gvp = g[q] + gvn;
      }
      const float gdrive = gvp * k * r;
      gv[q] = LEAK ? gvp * (1.0f - k) : gvp;
      if (SYN) {
        const float gin = gdrive + (gi[q] + gi[q] * nks);
        gx[q] = gin;
        gi[q] = gin;
      } else {
        gx[q] = gdrive;
      }
    }
  }
}

using BwdFn = void (*)(const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, float, float, float,
                       float, float, float, float*, float*, float*);

template <bool SYN, bool LEAK, bool SPIKING, bool SUB, int SG>
NEUROSIM_TARGET("avx2") __attribute__((flatten)) void bwd_segment_avx2(const float* G, const float* VPa, float* GXa, int64_t j0,
                                                               int64_t len, int64_t T, int64_t N, float k, float r,
                                                               float th, float vr, float nks, float alpha, float* gv,
                                                               float* gi, float* ath) {
  bwd_segment<SYN, LEAK, SPIKING, SUB, SG>(G, VPa, GXa, j0, len, T, N, k, r, th, vr, nks, alpha, gv, gi, ath);
}

template <bool SYN, bool LEAK, bool SPIKING, bool SUB, int SG>
__attribute__((flatten)) void bwd_segment_plain(const float* G, const float* VPa, float* GXa, int64_t j0, int64_t len,
                                                int64_t T, int64_t N, float k, float r, float th, float vr, float nks,
                                                float alpha, float* gv, float* gi, float* ath) {
  bwd_segment<SYN, LEAK, SPIKING, SUB, SG>(G, VPa, GXa, j0, len, T, N, k, r, th, vr, nks, alpha, gv, gi, ath);
}

template <bool SYN, bool LEAK, bool SPIKING, bool SUB>
BwdFn pick_bwd_sg(int sg, bool avx) {
  switch (sg) {
    case SG_SUPERSPIKE:
      return avx ? &bwd_segment_avx2<SYN, LEAK, SPIKING, SUB, SG_SUPERSPIKE> : &bwd_segment_plain<SYN, LEAK, SPIKING, SUB, SG_SUPERSPIKE>;
    case SG_RECTANGLE:
      return avx ? &bwd_segment_avx2<SYN, LEAK, SPIKING, SUB, SG_RECTANGLE> : &bwd_segment_plain<SYN, LEAK, SPIKING, SUB, SG_RECTANGLE>;
    case SG_ARCTAN:
      return avx ? &bwd_segment_avx2<SYN, LEAK, SPIKING, SUB, SG_ARCTAN> : &bwd_segment_plain<SYN, LEAK, SPIKING, SUB, SG_ARCTAN>;
    default:
      return avx ? &bwd_segment_avx2<SYN, LEAK, SPIKING, SUB, SG_SIGMOID> : &bwd_segment_plain<SYN, LEAK, SPIKING, SUB, SG_SIGMOID>;
  }
}

BwdFn pick_bwd(bool syn, bool leak, bool spiking, bool sub, int sg, bool avx) {
  const int key = (syn << 3) | (leak << 2) | (spiking << 1) | int(sub);
  switch (key) {
    case 0: return pick_bwd_sg<false, false, false, false>(sg, avx);
    case 1: return pick_bwd_sg<false, false, false, true>(sg, avx);
    case 2: return pick_bwd_sg<false, false, true, false>(sg, avx);
    case 3: return pick_bwd_sg<false, false, true, true>(sg, avx);
    case 4: return pick_bwd_sg<false, true, false, false>(sg, avx);
    case 5: return pick_bwd_sg<false, true, false, true>(sg, avx);
    case 6: return pick_bwd_sg<false, true, true, false>(sg, avx);
    case 7: return pick_bwd_sg<false, true, true, true>(sg, avx);
    case 8: return pick_bwd_sg<true, false, false, false>(sg, avx);
    case 9: return pick_bwd_sg<true, false, false, true>(sg, avx);
    case 10: return pick_bwd_sg<true, false, true, false>(sg, avx);
    case 11: return pick_bwd_sg<true, false, true, true>(sg, avx);
    case 12: return pick_bwd_sg<true, true, false, false>(sg, avx);
    case 13: return pick_bwd_sg<true, true, false, true>(sg, avx);
    case 14: return pick_bwd_sg<true, true, true, false>(sg, avx);
    default: return pick_bwd_sg<true, true, true, true>(sg, avx);
  }
}

// --------------------------------------------------------------------------- neuron backward
// Reverse-time sweep with the hand-written adjoint of the forward above. Gradients of the
// per-channel threshold and of k are accumulated in double per thread, then summed in order.

void neuron_backward(FArr gout, FArr vpre, FArr ipre, U8Arr refmask, FArr x, FArr v0, FArr params,
                     FArr gx, DArr gth, DArr gk, int64_t C, int64_t S, bool syn, bool leak, bool spiking,
                     int reset, int sg_kind, float alpha, int threads) {
  const int64_t N = v0.shape(0);
  const int64_t T = gout.shape(0) / std::max<int64_t>(N, 1);
  const float* G = gout.data();
  const float* VP = vpre.data();
  const float* IP = ipre.size() ? ipre.data() : nullptr;
  const uint8_t* RM = refmask.size() ? refmask.data() : nullptr;
  const float* X = x.size() ? x.data() : nullptr;
  const float* V0 = v0.data();
  const float* P = params.data();
  float* GX = gx.data();
  const bool want_th = gth.size() > 0, want_k = gk.size() > 0;
  if (!RM && !want_k) {
    const BwdFn fn = pick_bwd(syn, leak, spiking, reset == RESET_SUBTRACT, sg_kind, have_avx2());
    const std::vector<Segment> segs = make_segments(N, C, S);
    int nthreads = std::max<int>(1, std::min<int64_t>(threads, segs.size()));
    std::vector<double> acc(nthreads * C, 0.0);
    parallel_for((int64_t)segs.size(), nthreads, [&](int64_t s0, int64_t s1, int tid) {
      int64_t maxlen = 0;
      for (int64_t q = s0; q < s1; ++q) maxlen = std::max(maxlen, segs[q].len);
      std::vector<float> gv(maxlen), gi(maxlen), ath(maxlen);
      for (int64_t q = s0; q < s1; ++q) {
        const Segment& sg = segs[q];
        const int64_t c = sg.c;
        fn(G, VP, GX, sg.j0, sg.len, T, N, P[K * C + c], P[R * C + c], P[TH * C + c], P[VR * C + c],
           syn ? P[NKS * C + c] : 0.0f, alpha, gv.data(), gi.data(), ath.data());
        if (want_th) {
          double sum = 0.0;
          for (int64_t e = 0; e < sg.len; ++e) sum += ath[e];
          acc[tid * C + c] += sum;
        }
      }
    });
    if (want_th) {
      double* GTH = gth.data();
      for (int t = 0; t < nthreads; ++t)
        for (int64_t c = 0; c < C; ++c) GTH[c] += acc[t * C + c];
    }
    return;
  }
  const int64_t block = 2048;
  const int64_t nblocks = (N + block - 1) / block;
  int nthreads = std::max<int>(1, std::min<int64_t>(threads, nblocks));
  std::vector<double> acc_th(want_th ? nthreads * C : 0, 0.0), acc_k(want_k ? nthreads * C : 0, 0.0);
  parallel_for(nblocks, nthreads, [&](int64_t b0, int64_t b1, int tid) {
    double* ath = want_th ? &acc_th[tid * C] : nullptr;
    double* ak = want_k ? &acc_k[tid * C] : nullptr;
    std::vector<float> gv(block), gi(block);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * block, hi = std::min(N, lo + block);
      std::fill(gv.begin(), gv.end(), 0.0f);
      std::fill(gi.begin(), gi.end(), 0.0f);
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t base = t * N;
        for (int64_t j = lo; j < hi; ++j) {
          const int64_t c = (j / S) % C;
          const float k = P[K * C + c], vl = P[VL * C + c], r = P[R * C + c], th = P[TH * C + c];
          const float vp = VP[base + j];
          const bool ref = RM ? RM[base + j] != 0 : false;
          float gvn = gv[j - lo];  // gradient arriving at v_t (after reset)
          float gvp;
          if (spiking) {
            const bool z = (vp - th > 0.0f) && !ref;
            float gz = G[base + j];
            if (reset == RESET_VALUE) {
              gz += gvn * (P[VR * C + c] - vp);
              gvp = z ? 0.0f : gvn;
            } else {
              gz += gvn * (-th);
              gvp = gvn;
              if (ath && z) ath[c] -= gvn;
            }
            const float sg = ref ? 0.0f : surrogate(sg_kind, vp - th, alpha);
            gvp += gz * sg;
            if (ath) ath[c] -= (double)(gz * sg);
          } else {
            gvp = G[base + j] + gvn;
          }
          const float gdrive = ref ? 0.0f : gvp * k * r;
          if (ak) {
            float vprev;
            if (t == 0) {
              vprev = V0[j];
            } else {
              const float vq = VP[base - N + j];
              const bool refq = RM ? RM[base - N + j] != 0 : false;
              const bool zq = spiking && (vq - th > 0.0f) && !refq;
              vprev = !zq ? vq : (reset == RESET_VALUE ? P[VR * C + c] : vq - th);
            }
            float drive = ref ? 0.0f : (syn ? IP[base + j] : X[base + j]);
            float dk = leak ? ((vl - vprev) + r * drive) : r * drive;
            ak[c] += (double)gvp * (double)dk;
          }
          gv[j - lo] = leak ? gvp * (1.0f - k) : gvp;
          if (syn) {
            const float gin = gdrive + (gi[j - lo] + gi[j - lo] * P[NKS * C + c]);
            GX[base + j] = gin;
            gi[j - lo] = gin;
          } else {
            GX[base + j] = gdrive;
          }
        }
      }
    }
  });
  double* GTH = want_th ? gth.data() : nullptr;
  double* GK = want_k ? gk.data() : nullptr;
  for (int t = 0; t < nthreads; ++t)
    for (int64_t c = 0; c < C; ++c) {
      if (GTH) GTH[c] += acc_th[t * C + c];
      if (GK) GK[c] += acc_k[t * C + c];
    }
}

// ------------------------------------------------------------------ binary-spike convolution
// Forward: out[n, co, y, x] = bias[co] + sum over nonzero inputs s[n, ci, yi, xi] of
// s·w[co, ci, ky, kx] with yi = y + ky - pad, xi = x + kx - pad (stride 1); for 0/1 spikes the
// multiply is skipped. Each active input
// adds a contiguous Cout-vector of the transposed weight wt[ci, ky, kx, :] into an NHWC
// accumulator of the sample, which is then written out as NCHW. Work ∝ number of spikes.

inline void conv_fwd_body(const float* S, const float* WT, const float* B, float* O, int64_t n0, int64_t n1,
                          int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t Kh, int64_t Kw, int64_t pad,
                          int64_t Ho, int64_t Wo) {
  std::vector<float> acc(Ho * Wo * Cout);
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t p = 0; p < Ho * Wo; ++p) std::memcpy(&acc[p * Cout], B, Cout * sizeof(float));
    const float* sn = S + n * Cin * H * W;
    for (int64_t ci = 0; ci < Cin; ++ci) {
      const float* sc = sn + ci * H * W;
      for (int64_t yi = 0; yi < H; ++yi)
        for (int64_t xi = 0; xi < W; ++xi) {
          const float sv = sc[yi * W + xi];
          if (sv == 0.0f) continue;
          for (int64_t ky = 0; ky < Kh; ++ky) {
            const int64_t y = yi - ky + pad;
            if (y < 0 || y >= Ho) continue;
            for (int64_t kx = 0; kx < Kw; ++kx) {
              const int64_t xo = xi - kx + pad;
              if (xo < 0 || xo >= Wo) continue;
              float* __restrict o = &acc[(y * Wo + xo) * Cout];
              const float* __restrict w = WT + ((ci * Kh + ky) * Kw + kx) * Cout;
              if (sv == 1.0f)
                for (int64_t q = 0; q < Cout; ++q) o[q] += w[q];
              else
                for (int64_t q = 0; q < Cout; ++q) o[q] += sv * w[q];
            }
          }
        }
    }
    float* on = O + n * Cout * Ho * Wo;
    for (int64_t p = 0; p < Ho * Wo; ++p)
      for (int64_t co = 0; co < Cout; ++co) on[co * Ho * Wo + p] = acc[p * Cout + co];
  }
}

NEUROSIM_TARGET("avx2") __attribute__((flatten)) void conv_fwd_avx2(const float* S, const float* WT, const float* B, float* O,
                                                            int64_t n0, int64_t n1, int64_t Cin, int64_t H, int64_t W,
                                                            int64_t Cout, int64_t Kh, int64_t Kw, int64_t pad,
                                                            int64_t Ho, int64_t Wo) {
  conv_fwd_body(S, WT, B, O, n0, n1, Cin, H, W, Cout, Kh, Kw, pad, Ho, Wo);
}

__attribute__((flatten)) void conv_fwd_plain(const float* S, const float* WT, const float* B, float* O, int64_t n0,
                                             int64_t n1, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t Kh,
                                             int64_t Kw, int64_t pad, int64_t Ho, int64_t Wo) {
  conv_fwd_body(S, WT, B, O, n0, n1, Cin, H, W, Cout, Kh, Kw, pad, Ho, Wo);
}

bool have_avx2() {
  static const bool ok = NEUROSIM_CPU_SUPPORTS("avx2");
  return ok;
}


// ------------------------------------------------ gather kernels for 0/1 spikes (AVX2)
// For a sample whose nonzero inputs are all 1, index the active channels of every input pixel
// (forward) or the active pixels of every channel (weight gradient) and accumulate Cout-vectors
// in registers: forward out[y, x, :] = b + Σ_{ky,kx} Σ_{active ci at (y+ky−p, x+kx−p)} wt[ci,ky,kx,:];
// weight gradient dwt[ci,ky,kx,:] += Σ_{active (yi,xi) of ci} g[yi−ky+p, xi−kx+p, :]. Cout must be a
// multiple of 8; channel blocks of 8·NV. Samples with other values use the scatter kernels above.

#if NEUROSIM_X86
template <int NV>
__attribute__((target("avx2"))) void fwd_gather_sample(const int32_t* start, const int32_t* idx, const float* WT,
                                                       const float* B, float* acc, int64_t Cout, int64_t Kh,
                                                       int64_t Kw, int64_t pad, int64_t H, int64_t W, int64_t Ho,
                                                       int64_t Wo) {
  for (int64_t cb = 0; cb < Cout; cb += 8 * NV) {
    for (int64_t y = 0; y < Ho; ++y)
      for (int64_t x = 0; x < Wo; ++x) {
        __m256 a[NV];
        for (int v = 0; v < NV; ++v) a[v] = _mm256_loadu_ps(B + cb + 8 * v);
        for (int64_t ky = 0; ky < Kh; ++ky) {
          const int64_t yi = y + ky - pad;
          if (yi < 0 || yi >= H) continue;
          for (int64_t kx = 0; kx < Kw; ++kx) {
            const int64_t xi = x + kx - pad;
            if (xi < 0 || xi >= W) continue;
            const int64_t p = yi * W + xi;
            const float* wbase = WT + (ky * Kw + kx) * Cout + cb;
            const int64_t tapstride = Kh * Kw * Cout;
            for (int32_t e = start[p]; e < start[p + 1]; ++e) {
              const float* w = wbase + idx[e] * tapstride;
              for (int v = 0; v < NV; ++v) a[v] = _mm256_add_ps(a[v], _mm256_loadu_ps(w + 8 * v));
            }
          }
        }
        float* o = acc + (y * Wo + x) * Cout + cb;
        for (int v = 0; v < NV; ++v) _mm256_storeu_ps(o + 8 * v, a[v]);
      }
  }
}

template <int NV>
__attribute__((target("avx2"))) void wgrad_gather_sample(const int32_t* cstart, const int32_t* pys,
                                                         const int32_t* pxs, const float* gt, float* DW, int64_t Cin,
                                                         int64_t Cout, int64_t Kh, int64_t Kw, int64_t pad, int64_t Ho,
                                                         int64_t Wo) {
  for (int64_t ci = 0; ci < Cin; ++ci) {
    if (cstart[ci] == cstart[ci + 1]) continue;
    for (int64_t ky = 0; ky < Kh; ++ky)
      for (int64_t kx = 0; kx < Kw; ++kx)
        for (int64_t cb = 0; cb < Cout; cb += 8 * NV) {
          float* d = DW + ((ci * Kh + ky) * Kw + kx) * Cout + cb;
          __m256 a[NV];
          for (int v = 0; v < NV; ++v) a[v] = _mm256_loadu_ps(d + 8 * v);
          for (int32_t e = cstart[ci]; e < cstart[ci + 1]; ++e) {
            const int64_t y = pys[e] - ky + pad, xo = pxs[e] - kx + pad;
            if (y < 0 || y >= Ho || xo < 0 || xo >= Wo) continue;
            const float* g = gt + (y * Wo + xo) * Cout + cb;
            for (int v = 0; v < NV; ++v) a[v] = _mm256_add_ps(a[v], _mm256_loadu_ps(g + 8 * v));
          }
          for (int v = 0; v < NV; ++v) _mm256_storeu_ps(d + 8 * v, a[v]);
        }
  }
}

#endif  // NEUROSIM_X86

// Channel-block width (vectors of 8) for a Cout, or 0 when the gather kernels do not apply.
int gather_nv(int64_t Cout) {
  if (!NEUROSIM_X86) return 0;
  if (Cout % 32 == 0) return 4;
  if (Cout % 16 == 0) return 2;
  if (Cout % 8 == 0) return 1;
  return 0;
}

void spike_conv_forward(FArr s, FArr wt, FArr bias, FArr out, int64_t pad, int threads) {
  const int64_t Nb = s.shape(0), Cin = s.shape(1), H = s.shape(2), W = s.shape(3);
  const int64_t Kh = wt.shape(1), Kw = wt.shape(2), Cout = wt.shape(3);
  const int64_t Ho = out.shape(2), Wo = out.shape(3);
  const float *S = s.data(), *WT = wt.data(), *B = bias.data();
  float* O = out.data();
  const bool avx = have_avx2();
  const int nv = avx ? gather_nv(Cout) : 0;
  parallel_for(Nb, threads, [&](int64_t n0, int64_t n1, int) {
    std::vector<int32_t> start(H * W + 1), cur(H * W), idx(Cin * H * W);
    std::vector<float> acc(Ho * Wo * Cout);
    for (int64_t n = n0; n < n1; ++n) {
      const float* sn = S + n * Cin * H * W;
      bool binary = nv > 0;
      if (binary) {
        std::fill(start.begin(), start.end(), 0);
        for (int64_t ci = 0; ci < Cin && binary; ++ci)
          for (int64_t p = 0; p < H * W; ++p) {
            const float v = sn[ci * H * W + p];
            if (v != 0.0f) {
              binary &= v == 1.0f;
              start[p + 1]++;
            }
          }
      }
      if (!binary) {
        if (avx)
          conv_fwd_avx2(S, WT, B, O, n, n + 1, Cin, H, W, Cout, Kh, Kw, pad, Ho, Wo);
        else
          conv_fwd_plain(S, WT, B, O, n, n + 1, Cin, H, W, Cout, Kh, Kw, pad, Ho, Wo);
        continue;
      }
      for (int64_t p = 0; p < H * W; ++p) start[p + 1] += start[p];
      std::copy(start.begin(), start.end() - 1, cur.begin());
      for (int64_t ci = 0; ci < Cin; ++ci)
        for (int64_t p = 0; p < H * W; ++p)
          if (sn[ci * H * W + p] != 0.0f) idx[cur[p]++] = (int32_t)ci;
#if NEUROSIM_X86  // (nv > 0, and so binary, only with the gather kernels)
      if (nv == 4)
        fwd_gather_sample<4>(start.data(), idx.data(), WT, B, acc.data(), Cout, Kh, Kw, pad, H, W, Ho, Wo);
      else if (nv == 2)
        fwd_gather_sample<2>(start.data(), idx.data(), WT, B, acc.data(), Cout, Kh, Kw, pad, H, W, Ho, Wo);
      else
        fwd_gather_sample<1>(start.data(), idx.data(), WT, B, acc.data(), Cout, Kh, Kw, pad, H, W, Ho, Wo);
#endif
      float* on = O + n * Cout * Ho * Wo;
      for (int64_t p = 0; p < Ho * Wo; ++p)
        for (int64_t co = 0; co < Cout; ++co) on[co * Ho * Wo + p] = acc[p * Cout + co];
    }
  });
}

// Weight gradient: dwt[ci, ky, kx, co] = sum over active inputs of g[n, co, y, x] (same index
// relation as the forward). Samples are cut into fixed blocks of 8 whose partial sums are added
// in block order, so the result does not depend on the thread count.

inline void conv_wgrad_body(const float* S, const float* G, float* DW, int64_t n0, int64_t n1, int64_t Cin, int64_t H,
                            int64_t W, int64_t Cout, int64_t Kh, int64_t Kw, int64_t pad, int64_t Ho, int64_t Wo) {
  std::vector<float> gt(Ho * Wo * Cout);
  for (int64_t n = n0; n < n1; ++n) {
    const float* gn = G + n * Cout * Ho * Wo;
    for (int64_t co = 0; co < Cout; ++co)
      for (int64_t p = 0; p < Ho * Wo; ++p) gt[p * Cout + co] = gn[co * Ho * Wo + p];
    const float* sn = S + n * Cin * H * W;
    for (int64_t ci = 0; ci < Cin; ++ci) {
      const float* sc = sn + ci * H * W;
      for (int64_t yi = 0; yi < H; ++yi)
        for (int64_t xi = 0; xi < W; ++xi) {
          const float sv = sc[yi * W + xi];
          if (sv == 0.0f) continue;
          for (int64_t ky = 0; ky < Kh; ++ky) {
            const int64_t y = yi - ky + pad;
            if (y < 0 || y >= Ho) continue;
            for (int64_t kx = 0; kx < Kw; ++kx) {
              const int64_t xo = xi - kx + pad;
              if (xo < 0 || xo >= Wo) continue;
              float* __restrict d = DW + ((ci * Kh + ky) * Kw + kx) * Cout;
              const float* __restrict g = &gt[(y * Wo + xo) * Cout];
              if (sv == 1.0f)
                for (int64_t q = 0; q < Cout; ++q) d[q] += g[q];
              else
                for (int64_t q = 0; q < Cout; ++q) d[q] += sv * g[q];
            }
          }
        }
    }
  }
}

NEUROSIM_TARGET("avx2") __attribute__((flatten)) void conv_wgrad_avx2(const float* S, const float* G, float* DW, int64_t n0,
                                                              int64_t n1, int64_t Cin, int64_t H, int64_t W,
                                                              int64_t Cout, int64_t Kh, int64_t Kw, int64_t pad,
                                                              int64_t Ho, int64_t Wo) {
  conv_wgrad_body(S, G, DW, n0, n1, Cin, H, W, Cout, Kh, Kw, pad, Ho, Wo);
}

__attribute__((flatten)) void conv_wgrad_plain(const float* S, const float* G, float* DW, int64_t n0, int64_t n1,
                                               int64_t Cin, int64_t H, int64_t W, int64_t Cout, int64_t Kh,
                                               int64_t Kw, int64_t pad, int64_t Ho, int64_t Wo) {
  conv_wgrad_body(S, G, DW, n0, n1, Cin, H, W, Cout, Kh, Kw, pad, Ho, Wo);
}

void spike_conv_wgrad(FArr s, FArr g, FArr dwt, int64_t pad, int threads) {
  const int64_t Nb = s.shape(0), Cin = s.shape(1), H = s.shape(2), W = s.shape(3);
  const int64_t Kh = dwt.shape(1), Kw = dwt.shape(2), Cout = dwt.shape(3);
  const int64_t Ho = g.shape(2), Wo = g.shape(3);
  const int64_t wsize = Cin * Kh * Kw * Cout;
  const int64_t per = 8;
  const int64_t nblocks = (Nb + per - 1) / per;
  std::vector<float> partial(nblocks * wsize, 0.0f);
  const float *S = s.data(), *G = g.data();
  const bool avx = have_avx2();
  const int nv = avx ? gather_nv(Cout) : 0;
  parallel_for(nblocks, threads, [&](int64_t b0, int64_t b1, int) {
    std::vector<int32_t> cstart(Cin + 1), pys(Cin * H * W), pxs(Cin * H * W);
    std::vector<float> gt(Ho * Wo * Cout);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * per, n1 = std::min(Nb, n0 + per);
      float* dw = &partial[b * wsize];
      for (int64_t n = n0; n < n1; ++n) {
        const float* sn = S + n * Cin * H * W;
        bool binary = nv > 0;
        int32_t e = 0;
        for (int64_t ci = 0; ci < Cin && binary; ++ci) {
          cstart[ci] = e;
          for (int64_t yi = 0; yi < H; ++yi)
            for (int64_t xi = 0; xi < W; ++xi) {
              const float v = sn[(ci * H + yi) * W + xi];
              if (v != 0.0f) {
                binary &= v == 1.0f;
                pys[e] = (int32_t)yi;
                pxs[e] = (int32_t)xi;
                ++e;
              }
            }
        }
        if (!binary) {
          if (avx)
            conv_wgrad_avx2(S, G, dw, n, n + 1, Cin, H, W, Cout, Kh, Kw, pad, Ho, Wo);
          else
            conv_wgrad_plain(S, G, dw, n, n + 1, Cin, H, W, Cout, Kh, Kw, pad, Ho, Wo);
          continue;
        }
        cstart[Cin] = e;
        const float* gn = G + n * Cout * Ho * Wo;
        for (int64_t co = 0; co < Cout; ++co)
          for (int64_t p = 0; p < Ho * Wo; ++p) gt[p * Cout + co] = gn[co * Ho * Wo + p];
#if NEUROSIM_X86  // (nv > 0, and so binary, only with the gather kernels)
        if (nv == 4)
          wgrad_gather_sample<4>(cstart.data(), pys.data(), pxs.data(), gt.data(), dw, Cin, Cout, Kh, Kw, pad, Ho, Wo);
        else if (nv == 2)
          wgrad_gather_sample<2>(cstart.data(), pys.data(), pxs.data(), gt.data(), dw, Cin, Cout, Kh, Kw, pad, Ho, Wo);
        else
          wgrad_gather_sample<1>(cstart.data(), pys.data(), pxs.data(), gt.data(), dw, Cin, Cout, Kh, Kw, pad, Ho, Wo);
#endif
      }
    }
  });
  float* D = dwt.data();
  std::fill(D, D + wsize, 0.0f);
  for (int64_t b = 0; b < nblocks; ++b)
    for (int64_t q = 0; q < wsize; ++q) D[q] += partial[b * wsize + q];
}

bool is_binary(FArr x) {
  const float* X = x.data();
  const int64_t n = x.size();
  bool ok = true;
  for (int64_t j = 0; j < n && ok; j += 4096) {
    const int64_t hi = std::min(n, j + 4096);
    int bad = 0;
    for (int64_t q = j; q < hi; ++q) bad |= (X[q] != 0.0f) & (X[q] != 1.0f);
    ok = bad == 0;
  }
  return ok;
}

}  // namespace

void register_chain(nb::module_& m);  // snn_chain.cpp

NB_MODULE(_snn, m) {
  m.doc() = "neurosim fused spiking kernels (neuron recurrence, binary-spike convolution)";
  m.def("neuron_forward", &neuron_forward, nb::call_guard<nb::gil_scoped_release>());
  m.def("neuron_backward", &neuron_backward, nb::call_guard<nb::gil_scoped_release>());
  m.def("spike_conv_forward", &spike_conv_forward, nb::call_guard<nb::gil_scoped_release>());
  m.def("spike_conv_wgrad", &spike_conv_wgrad, nb::call_guard<nb::gil_scoped_release>());
  m.def("have_avx2", &have_avx2);
  m.def("is_binary", &is_binary, nb::call_guard<nb::gil_scoped_release>());
  register_chain(m);
}
