// nanobind module sim_events._dvs: the per-pixel DVS model between two frames, the input
// noise gate, and the greedy event matcher of the fidelity metrics.
//
// Everything here is single-threaded and deterministic: random numbers come from a
// counter-based generator (splitmix64 of seed, frame pair, pixel and purpose), so the same
// inputs and seed give the same events whatever else runs. The math is documented in
// sim_events/pixel.py (the Python side that prepares the arrays and checks the shapes).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

template <typename T, typename... Extra>
using arr = nb::ndarray<T, nb::device::cpu, nb::c_contig, Extra...>;

namespace {

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

// ---------------------------------------------------------------- counter-based random numbers
inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

struct Stream {
    uint64_t state;
    Stream(uint64_t seed, uint64_t pair, uint64_t pixel, uint64_t purpose)
        : state(splitmix64(splitmix64(splitmix64(seed ^ (purpose << 56)) ^ pair) ^ pixel)) {}
    uint64_t next() { state += 0x9E3779B97F4A7C15ULL; return splitmix64(state); }
    double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
    double normal() {
        double u1 = uniform(), u2 = uniform();
        if (u1 < 1e-300) u1 = 1e-300;
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }
    int64_t poisson(double lam) {
        if (lam <= 0) return 0;
        if (lam > 30) {
            double v = std::floor(lam + std::sqrt(lam) * normal() + 0.5);
            return v < 0 ? 0 : static_cast<int64_t>(v);
        }
        double l = std::exp(-lam), p = 1.0;
        int64_t k = 0;
        do { ++k; p *= uniform(); } while (p > l);
        return k - 1;
    }
};

enum Purpose : uint64_t { P_SHOT = 1, P_HOT = 2, P_JITTER = 3, P_BRIDGE = 4 };

struct Event {
    int64_t t;
    uint32_t pix;
    uint8_t p;
};

inline float bilinear(const uint8_t* img, const float* lut, int64_t w, int64_t h, float x, float y) {
    if (!(x >= 0.f)) x = 0.f;  // also catches NaN
    if (!(y >= 0.f)) y = 0.f;
    const float xm = static_cast<float>(w - 1), ym = static_cast<float>(h - 1);
    if (x > xm) x = xm;
    if (y > ym) y = ym;
    int64_t x0 = static_cast<int64_t>(x), y0 = static_cast<int64_t>(y);
    int64_t x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
    float fx = x - static_cast<float>(x0), fy = y - static_cast<float>(y0);
    float a = lut[img[y0 * w + x0]], b = lut[img[y0 * w + x1]];
    float c = lut[img[y1 * w + x0]], d = lut[img[y1 * w + x1]];
    float top = a + fx * (b - a), bot = c + fx * (d - c);
    return top + fy * (bot - top);
}

template <typename T>
nb::ndarray<nb::numpy, T, nb::ndim<1>> to_numpy(std::vector<T>&& v) {
    auto* heap = new std::vector<T>(std::move(v));
    nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
    return nb::ndarray<nb::numpy, T, nb::ndim<1>>(heap->data(), {heap->size()}, owner);
}

using U8_2 = arr<const uint8_t, nb::ndim<2>>;
using F32_1 = arr<const float, nb::ndim<1>>;
using F32_2 = arr<const float, nb::ndim<2>>;
using F32_2w = arr<float, nb::ndim<2>>;
using F32_3 = arr<const float, nb::ndim<3>>;
using I64_2w = arr<int64_t, nb::ndim<2>>;
using U8_2w = arr<uint8_t, nb::ndim<2>>;
using I64_1 = arr<const int64_t, nb::ndim<1>>;

}  // namespace

// One frame pair (A at ta, B at tb) through every pixel. See sim_events/pixel.py for the model.
static nb::tuple simulate_pair(
    U8_2 frame_a, U8_2 frame_b, F32_1 lut, F32_3 flow, U8_2 moving, bool use_flow,
    F32_2w ref, F32_2w lp, I64_2w last_t,
    F32_2 th_on, F32_2 th_off, F32_2 leak_hz, F32_2 hot_hz, bool has_hot,
    int64_t ta, int64_t tb, double refractory_us, double cutoff_hz, double shot_noise_rate_hz,
    double jitter_us, double latency_us, double max_px_per_step, double max_theta_fraction,
    int64_t max_substeps, double bridge_sigma, uint64_t seed, uint64_t pair_index) {
    const int64_t h = frame_a.shape(0), w = frame_a.shape(1);
    auto same = [&](auto& a) { return static_cast<int64_t>(a.shape(0)) == h && static_cast<int64_t>(a.shape(1)) == w; };
    require(same(frame_b) && same(ref) && same(lp) && same(last_t) && same(th_on) && same(th_off) &&
                same(leak_hz) && same(hot_hz), "all per-pixel arrays must have the frame's shape");
    require(lut.shape(0) == 256, "lut must have 256 entries");
    require(!use_flow || (same(flow) && flow.shape(2) == 2 && same(moving)), "flow must be (H, W, 2) and moving (H, W)");
    require(tb > ta, "frame times must increase");
    require(max_substeps >= 1 && max_substeps <= 4096, "max_substeps must be in 1..4096");

    const uint8_t* A = frame_a.data();
    const uint8_t* B = frame_b.data();
    const float* L = lut.data();
    const float* F = use_flow ? flow.data() : nullptr;
    const uint8_t* M = use_flow ? moving.data() : nullptr;
    float* REF = ref.data();
    float* LP = lp.data();
    int64_t* LAST = last_t.data();
    const float *TON = th_on.data(), *TOFF = th_off.data(), *LEAK = leak_hz.data(), *HOT = hot_hz.data();

    const double span = static_cast<double>(tb - ta);
    const double span_s = span * 1e-6;
    const int64_t lat = static_cast<int64_t>(std::llround(latency_us));
    const int64_t lo = ta + lat, hi = tb + lat - 1;
    const int64_t refr = static_cast<int64_t>(std::llround(refractory_us));
    std::vector<Event> ev;
    ev.reserve(4096);
    std::vector<double> bridge(static_cast<size_t>(max_substeps) + 1, 0.0);

    // shot-noise rate factor 2 / (1 + DN/64) per DN, and the per-pair expected counts
    double shot_lam[256];
    for (int v = 0; v < 256; ++v) shot_lam[v] = shot_noise_rate_hz * 2.0 / (1.0 + v / 64.0) * span_s;
    const double inv_px = 1.0 / max_px_per_step;

    // Crossings of one sub-step [t0, t0 + dt): u = L − L_ref goes linearly from u0 (start,
    // before this step's leak) to u1 = lcur − r (end). ON when u reaches θ_on (then L_ref +=
    // θ_on, i.e. u0, u1 −= θ_on), OFF when it reaches −θ_off; each event at its crossing time.
    auto emit_crossings = [&](double u0, double lcur, double& r, double ton, double toff,
                              double t0, double dt, int64_t i) {
        double u1 = lcur - r;
        while (u1 >= ton || u1 <= -toff) {
            const bool on = u1 >= ton;
            const double level = on ? ton : -toff;
            const double du = u1 - u0;
            double frac = du != 0.0 ? (level - u0) / du : 1.0;
            frac = frac < 0 ? 0 : (frac > 1 ? 1 : frac);
            int64_t te = static_cast<int64_t>(std::floor(t0 + frac * dt));
            if (te >= tb) te = tb - 1;
            const double step = on ? ton : -toff;
            r += step;
            u0 -= step;
            u1 -= step;
            if (te - LAST[i] >= refr) {  // LAST is touched only here: still pixels never load it
                ev.push_back({te + lat, static_cast<uint32_t>(i), static_cast<uint8_t>(on)});
                LAST[i] = te;
            }
        }
    };

    for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
            const int64_t i = y * w + x;
            const double la = L[A[i]], lb = L[B[i]];
            const double ton = TON[i], toff = TOFF[i];
            double fx = 0, fy = 0;
            if (F && M[i]) {
                fx = F[2 * i];
                fy = F[2 * i + 1];
                // sub-0.01 px flow is estimation noise: treat as still (saves the warps)
                if (!(fx * fx + fy * fy >= 1e-4) || !std::isfinite(fx * fx + fy * fy)) { fx = 0; fy = 0; }
            }
            double lf = LP[i];
            double r = REF[i];
            const double leak_rate = static_cast<double>(LEAK[i]) * ton * 1e-6;  // log units per µs
            if (fx == 0 && fy == 0 && la == lb && lf == lb) {
                // fast path: a still pixel at rest (one step, only the leak moves the reference)
                const double u0 = lf - r;
                r -= leak_rate * span;
                if (lf - r >= ton || r - lf >= toff) emit_crossings(u0, lf, r, ton, toff, static_cast<double>(ta), span, i);
            } else {
                // adaptive sub-steps: <= max_px_per_step of motion, <= a fraction of theta of change
                const double move = std::sqrt(fx * fx + fy * fy) * inv_px;
                const double change = std::max(std::fabs(lb - la), std::fabs(lb - lf)) / (max_theta_fraction * std::min(ton, toff));
                const double need = std::max(move, change);
                int64_t n = need > 1.0 ? static_cast<int64_t>(std::ceil(need)) : 1;
                if (n > max_substeps) n = max_substeps;
                const double dt = span / static_cast<double>(n);
                const double leak_step = leak_rate * dt;
                double lprev = lf;
                const double dna = A[i], dnb = B[i];
                const bool warp = F && (fx != 0.0 || fy != 0.0);
                // Brownian bridge (zero at both frames) for the change the flow does not explain:
                // its scale follows the residual R = L_B(p) − L_A(p − f) (or L_B − L_A without flow)
                const bool use_bridge = bridge_sigma > 0 && n > 1;
                if (use_bridge) {
                    Stream st(seed, pair_index, static_cast<uint64_t>(i), P_BRIDGE);
                    const double resid = warp ? lb - bilinear(A, L, w, h, static_cast<float>(x - fx), static_cast<float>(y - fy))
                                              : lb - la;
                    const double scale = bridge_sigma * std::min(1.0, std::fabs(resid) / std::min(ton, toff)) / std::sqrt(static_cast<double>(n));
                    bridge[0] = 0;
                    for (int64_t k = 1; k <= n; ++k) bridge[k] = bridge[k - 1] + scale * st.normal();
                    const double end = bridge[n];
                    for (int64_t k = 1; k <= n; ++k) bridge[k] -= end * static_cast<double>(k) / static_cast<double>(n);
                }
                double alpha_a = 1.0, alpha_b = 1.0;
                if (cutoff_hz > 0) {
                    const double c = -6.283185307179586 * cutoff_hz / 275.0 * dt * 1e-6;
                    alpha_a = 1.0 - std::exp(c * (dna + 20.0));
                    alpha_b = 1.0 - std::exp(c * (dnb + 20.0));
                }
                for (int64_t k = 1; k <= n; ++k) {
                    const double s = static_cast<double>(k) / static_cast<double>(n);
                    double lin;
                    if (k == n) {
                        lin = lb;
                    } else if (warp) {
                        // log intensity carried along the flow from both frames, blended linearly
                        const float xa = static_cast<float>(x - s * fx), ya = static_cast<float>(y - s * fy);
                        const float xb = static_cast<float>(x + (1 - s) * fx), yb = static_cast<float>(y + (1 - s) * fy);
                        lin = (1 - s) * bilinear(A, L, w, h, xa, ya) + s * bilinear(B, L, w, h, xb, yb);
                    } else {
                        lin = (1 - s) * la + s * lb;
                    }
                    if (use_bridge) lin += bridge[k];
                    double lcur;
                    if (cutoff_hz > 0 && std::fabs(lin - lf) > 1e-7) {
                        // alpha = 1 − exp(−2π f_c(DN) Δt), interpolated between its values at A and B
                        const double alpha = (1 - s) * alpha_a + s * alpha_b;
                        lcur = lf + alpha * (lin - lf);
                    } else {
                        lcur = lin;
                    }
                    lf = lcur;
                    const double u0 = lprev - r;
                    r -= leak_step;
                    emit_crossings(u0, lcur, r, ton, toff, static_cast<double>(ta) + (k - 1) * dt, dt, i);
                    lprev = lcur;
                }
                LP[i] = static_cast<float>(lf);
            }
            REF[i] = static_cast<float>(r);
            if (has_hot && HOT[i] > 0) {
                Stream st(seed, pair_index, static_cast<uint64_t>(i), P_HOT);
                int64_t c = st.poisson(HOT[i] * span_s);
                for (int64_t j = 0; j < c; ++j) {
                    const int64_t te = ta + static_cast<int64_t>(st.uniform() * span);
                    ev.push_back({te + lat, static_cast<uint32_t>(i), 1});
                }
            }
        }
    }
    // shot noise: Poisson per pixel with rate shot_noise_rate_hz * 2 / (1 + DN/64) (DN of frame B),
    // ON and OFF alike, uniform times. Drawn by thinning: candidates at the darkest pixel's rate,
    // uniformly over the sensor, each kept with probability rate(DN)/rate(0).
    if (shot_noise_rate_hz > 0) {
        Stream st(seed, pair_index, 0xFFFFFFFEULL, P_SHOT);
        const int64_t npix = h * w;
        const double lam_max = shot_lam[0];
        const int64_t c = st.poisson(lam_max * static_cast<double>(npix));
        for (int64_t j = 0; j < c; ++j) {
            int64_t i = static_cast<int64_t>(st.uniform() * static_cast<double>(npix));
            if (i >= npix) i = npix - 1;
            const double keep = st.uniform();
            const int64_t te = ta + static_cast<int64_t>(st.uniform() * span);
            const uint8_t pol = static_cast<uint8_t>(st.uniform() < 0.5);
            if (keep * lam_max < shot_lam[B[i]]) ev.push_back({te + lat, static_cast<uint32_t>(i), pol});
        }
    }
    if (jitter_us > 0) {
        // one jitter stream per pair, consumed in pixel order (deterministic)
        Stream st(seed, pair_index, 0xFFFFFFFFULL, P_JITTER);
        for (auto& e : ev) {
            int64_t te = e.t + static_cast<int64_t>(std::llround(jitter_us * st.normal()));
            // keep inside the pair's span by reflection at its ends (clamping would pile events up there)
            for (int it = 0; it < 4 && (te < lo || te > hi); ++it) te = te < lo ? 2 * lo - te : 2 * hi - te;
            e.t = te < lo ? lo : (te > hi ? hi : te);
        }
    }
    std::stable_sort(ev.begin(), ev.end(), [](const Event& a, const Event& b) { return a.t < b.t; });
    std::vector<uint16_t> xs(ev.size()), ys(ev.size());
    std::vector<int64_t> ts(ev.size());
    std::vector<uint8_t> ps(ev.size());
    for (size_t j = 0; j < ev.size(); ++j) {
        xs[j] = static_cast<uint16_t>(ev[j].pix % w);
        ys[j] = static_cast<uint16_t>(ev[j].pix / w);
        ts[j] = ev[j].t;
        ps[j] = ev[j].p;
    }
    return nb::make_tuple(to_numpy(std::move(xs)), to_numpy(std::move(ys)), to_numpy(std::move(ts)), to_numpy(std::move(ps)));
}

// Noise gate of the input frames: a pixel of the kept frame follows the new frame only where
// |new - kept| > k * sqrt(read^2 + gain * kept) (DN), so sensor read noise makes no events.
static void noise_gate(U8_2w kept, U8_2 frame, double read_noise_dn, double shot_gain, double k) {
    const int64_t h = kept.shape(0), w = kept.shape(1);
    require(static_cast<int64_t>(frame.shape(0)) == h && static_cast<int64_t>(frame.shape(1)) == w,
            "frame and gate state must have the same shape");
    float thr[256];
    for (int v = 0; v < 256; ++v) thr[v] = static_cast<float>(k * std::sqrt(read_noise_dn * read_noise_dn + shot_gain * v));
    uint8_t* E = kept.data();
    const uint8_t* Fr = frame.data();
    for (int64_t i = 0; i < h * w; ++i) {
        const float d = std::fabs(static_cast<float>(Fr[i]) - static_cast<float>(E[i]));
        if (d > thr[E[i]]) E[i] = Fr[i];
    }
}

// Greedy matching of real to simulated events (both sorted by key, then time): each real
// event takes the earliest unused simulated event of its key within +-tol. Returns the count.
static int64_t match_events(I64_1 key_sim, I64_1 t_sim, I64_1 key_real, I64_1 t_real, int64_t tol) {
    const int64_t ns = key_sim.shape(0), nr = key_real.shape(0);
    require(static_cast<int64_t>(t_sim.shape(0)) == ns && static_cast<int64_t>(t_real.shape(0)) == nr,
            "keys and times must have the same length");
    const int64_t *ks = key_sim.data(), *ts = t_sim.data(), *kr = key_real.data(), *tr = t_real.data();
    int64_t j = 0, matched = 0;
    for (int64_t i = 0; i < nr; ++i) {
        const int64_t k = kr[i], t = tr[i];
        while (j < ns && (ks[j] < k || (ks[j] == k && ts[j] < t - tol))) ++j;
        if (j < ns && ks[j] == k && ts[j] <= t + tol) {
            ++matched;
            ++j;
        }
    }
    return matched;
}

NB_MODULE(_dvs, m) {
    m.doc() = "DVS pixel model between two frames, input noise gate, event matcher";
    m.def("simulate_pair", &simulate_pair, "frame_a"_a, "frame_b"_a, "lut"_a, "flow"_a, "moving"_a, "use_flow"_a,
          "ref"_a, "lp"_a, "last_t"_a, "th_on"_a, "th_off"_a, "leak_hz"_a, "hot_hz"_a, "has_hot"_a, "ta"_a, "tb"_a,
          "refractory_us"_a, "cutoff_hz"_a, "shot_noise_rate_hz"_a, "jitter_us"_a, "latency_us"_a,
          "max_px_per_step"_a, "max_theta_fraction"_a, "max_substeps"_a, "bridge_sigma"_a, "seed"_a, "pair_index"_a);
    m.def("noise_gate", &noise_gate, "kept"_a, "frame"_a, "read_noise_dn"_a, "shot_gain"_a, "k"_a);
    m.def("match_events", &match_events, "key_sim"_a, "t_sim"_a, "key_real"_a, "t_real"_a, "tol"_a);
}
