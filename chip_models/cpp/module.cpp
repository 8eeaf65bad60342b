// nanobind module chip_models._kernels: the integer kernels of kernels.cpp on numpy arrays,
// without copies (the arrays are viewed in place; outputs are written into caller arrays).
// Shapes are checked here; value ranges (shifts, K <= MAX_FAN_IN) in chip_models/kernels.py.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <neurosim/intmath.h>
#include <neurosim/simd.h>
#include <neurosim/thread_pool.h>

#include "kernels.h"

namespace nb = nanobind;
using namespace nb::literals;

template <typename T, typename... Extra>
using arr = nb::ndarray<T, nb::device::cpu, nb::c_contig, Extra...>;

using I8_1 = arr<const int8_t, nb::ndim<1>>;
using I8_2 = arr<const int8_t, nb::ndim<2>>;
using I32_1 = arr<const int32_t, nb::ndim<1>>;
using I32_1w = arr<int32_t, nb::ndim<1>>;
using I32_2w = arr<int32_t, nb::ndim<2>>;
using I8_1w = arr<int8_t, nb::ndim<1>>;

static void require(bool ok, const char* what) {  // const char*: no string is built when ok
    if (!ok) throw std::invalid_argument(what);
}

static const int32_t* bias_ptr(const std::optional<I32_1>& bias, int64_t m) {
    if (!bias) return nullptr;
    require(static_cast<int64_t>(bias->shape(0)) == m, "bias must have one entry per output");
    return bias->data();
}

static int check_path(chip::Path path) {
    using namespace chip;
    require(path >= SCALAR && path <= AMX, "unknown path");
    require(path == SCALAR || cpu_has_avx2(), "this CPU has no AVX2");
    require(path != AVX512VNNI || cpu_has_avx512vnni(), "this CPU has no AVX-512 VNNI");
    require(path != AVXVNNI || cpu_has_avxvnni(), "this CPU has no AVX-VNNI");
    require(path != AMX || cpu_has_amx(), "this CPU (or the OS) gives no AMX-INT8 tiles");
    return path;
}

// The stages of an SNN chain from the Python arguments (checked; pointers into the arrays).
static std::vector<chip::ChainStage> chain_stages(
    const arr<const int8_t, nb::ndim<4>>& x, const std::vector<arr<const int8_t, nb::ndim<4>>>& weights,
    const std::vector<std::optional<I32_1>>& biases, const std::vector<chip::LayerParams>& params,
    const std::vector<int>& pools, const std::optional<I8_1>& lut,
    const arr<int8_t, nb::ndim<4>>& out, const std::vector<std::optional<arr<int32_t, nb::ndim<3>>>>& in_counts,
    const std::vector<std::optional<arr<int32_t, nb::ndim<3>>>>& out_counts, chip::Path path, int threads) {
    // per stage: its LayerParams and the max-pool size before it (0: none)
    const size_t n = weights.size();
    require(n >= 1 && biases.size() == n && params.size() == n && pools.size() == n && in_counts.size() == n &&
                out_counts.size() == n, "one weight, bias, params, pool, in_count and out_count per stage");
    std::vector<chip::ChainStage> st(n);
    int64_t c = x.shape(1), h = x.shape(2), w = x.shape(3);
    for (size_t i = 0; i < n; ++i) {
        chip::ConvLayerArgs& a = st[i].conv;
        const chip::LayerParams& lp = params[i];
        const int64_t stride = lp.stride, pad = lp.pad;
        const int shift = lp.shift, soma = lp.soma, pool = pools[i];
        require(pool >= 0 && (i > 0 || pool == 0), "only stages after the first can pool");
        if (pool) {
            require(pool >= 1 && h >= pool && w >= pool, "pool window larger than the map");
            h /= pool; w /= pool;
        }
        const auto& wt = weights[i];
        a.x = i == 0 ? x.data() : nullptr;
        a.steps = x.shape(0); a.c = c; a.h = h; a.w = w;
        require(static_cast<int64_t>(wt.shape(1)) == c, "stage weight must be (M, C, kh, kw) with its input's C");
        a.weight = wt.data();
        a.m = wt.shape(0); a.kh = wt.shape(2); a.kw = wt.shape(3);
        require(a.c * a.kh * a.kw <= neurosim::intmath::MAX_FAN_IN, "fan-in C*kh*kw must be at most 65536 (intmath MAX_FAN_IN)");
        require(stride >= 1 && pad >= 0, "stride must be >= 1 and pad >= 0");
        require(h + 2 * pad >= a.kh && w + 2 * pad >= a.kw, "kernel larger than the padded input");
        a.stride = stride; a.pad = pad;
        a.ho = (h + 2 * pad - a.kh) / stride + 1;
        a.wo = (w + 2 * pad - a.kw) / stride + 1;
        a.bias = bias_ptr(biases[i], a.m);
        require(shift >= -24, "shift must be >= -24");
        require(soma >= 0 && soma <= 3, "soma must be 0 (none), 1 (relu), 2 (lut) or 3 (lif)");
        require(i + 1 == n || (soma == 3 && a.m % 8 == 0), "stages before the last must be SNN with M % 8 == 0");
        a.shift = shift; a.soma = soma;
        require(soma != 2 || (lut && lut->shape(0) == 256), "a lut activation needs a 256-entry lut");
        a.lut = lut ? lut->data() : nullptr;
        a.lif = lp.lif;
        a.mode = chip::MODE_AUTO;
        st[i].pool = pool;
        if (in_counts[i]) {
            require(i == 0 || pool, "in_count only for the first stage or a pooling stage");
            const auto& ic = *in_counts[i];
            require(static_cast<int64_t>(ic.shape(0)) == c && static_cast<int64_t>(ic.shape(1)) == h &&
                        static_cast<int64_t>(ic.shape(2)) == w, "in_count must be (C, H, W) of the stage's input");
            a.in_count = ic.data();
        }
        if (out_counts[i]) {
            const auto& oc = *out_counts[i];
            require(static_cast<int64_t>(oc.shape(0)) == a.m && static_cast<int64_t>(oc.shape(1)) == a.ho &&
                        static_cast<int64_t>(oc.shape(2)) == a.wo, "out_count must be (M, Ho, Wo)");
            a.out_count = oc.data();
        }
        c = a.m; h = a.ho; w = a.wo;
    }
    require(static_cast<int64_t>(out.shape(0)) == x.shape(0) && static_cast<int64_t>(out.shape(1)) == c &&
                static_cast<int64_t>(out.shape(2)) == h && static_cast<int64_t>(out.shape(3)) == w,
            "out must be (T, M, Ho, Wo) of the last stage");
    st[n - 1].conv.out = out.data();
    check_path(path);
    require(threads >= 1, "threads must be >= 1");
    return st;
}

NB_MODULE(_kernels, m) {
    m.doc() = "int8 MAC, spike accumulation, integer LIF, output stage and packet counting kernels";
    m.def("abi_version", []() { return 4; });

    nb::enum_<chip::Path>(m, "Path", "kernel path (instruction set); every path gives the same bits")
        .value("SCALAR", chip::SCALAR)
        .value("AVX2", chip::AVX2)
        .value("AVX512VNNI", chip::AVX512VNNI)
        .value("AVXVNNI", chip::AVXVNNI)
        .value("AMX", chip::AMX);
    nb::enum_<chip::Soma>(m, "Soma", "a layer's soma: ANN output stage (sat8, then none / relu / lut) or integer LIF")
        .value("NONE", chip::SOMA_NONE)
        .value("RELU", chip::SOMA_RELU)
        .value("LUT", chip::SOMA_LUT)
        .value("LIF", chip::SOMA_LIF);
    nb::enum_<chip::AccMode>(m, "AccMode", "conv_layer accumulation: AUTO chooses from the input")
        .value("AUTO", chip::MODE_AUTO)
        .value("EVENTS", chip::MODE_EVENTS)
        .value("PLANE", chip::MODE_PLANE)
        .value("LUT", chip::MODE_LUT)
        .value("GEMM", chip::MODE_GEMM);
    nb::enum_<chip::FirstStage>(m, "FirstStage", "how an SNN chain's first stage accumulates: AUTO by activity")
        .value("AUTO", chip::FIRST_AUTO)
        .value("SPANS", chip::FIRST_SPANS)
        .value("ROWS", chip::FIRST_ROWS);
    nb::class_<chip::LIFParams>(m, "LIFParams", "integer LIF parameters (neurosim.intneuron.IntLIFParams; reset_mode "
                                               "is the index in RESET_MODES)")
        .def(
            "__init__",
            [](chip::LIFParams* p, int32_t v_th, int32_t v_reset, int32_t reset_mode, int32_t reset_constant,
               int32_t leak_alpha, int32_t leak_beta, int32_t refractory_steps) {
                new (p) chip::LIFParams{v_th, v_reset, reset_mode, reset_constant, leak_alpha, leak_beta,
                                        refractory_steps};
            },
            "v_th"_a = 0, "v_reset"_a = 0, "reset_mode"_a = 0, "reset_constant"_a = 0, "leak_alpha"_a = 0,
            "leak_beta"_a = 0, "refractory_steps"_a = 0)
        .def_rw("v_th", &chip::LIFParams::v_th)
        .def_rw("v_reset", &chip::LIFParams::v_reset)
        .def_rw("reset_mode", &chip::LIFParams::reset_mode)
        .def_rw("reset_constant", &chip::LIFParams::reset_constant)
        .def_rw("leak_alpha", &chip::LIFParams::leak_alpha)
        .def_rw("leak_beta", &chip::LIFParams::leak_beta)
        .def_rw("refractory_steps", &chip::LIFParams::refractory_steps);
    nb::class_<chip::LayerParams>(m, "LayerParams", "the fixed parameters of a conv layer call (arrays beside them)")
        .def(
            "__init__",
            [](chip::LayerParams* p, int64_t stride, int64_t pad, int shift, chip::Soma soma, chip::AccMode mode,
               const chip::LIFParams& lif) {
                require(stride >= 1 && pad >= 0, "stride must be >= 1 and pad >= 0");
                require(shift >= neurosim::intmath::MIN_SHIFT, "shift must be >= -24");
                new (p) chip::LayerParams{stride, pad, shift, soma, mode, lif};
            },
            "stride"_a = 1, "pad"_a = 0, "shift"_a = 0, "soma"_a = chip::SOMA_NONE, "mode"_a = chip::MODE_AUTO,
            "lif"_a = chip::LIFParams{})
        .def_ro("stride", &chip::LayerParams::stride)
        .def_ro("pad", &chip::LayerParams::pad)
        .def_ro("shift", &chip::LayerParams::shift)
        .def_ro("soma", &chip::LayerParams::soma)
        .def_ro("mode", &chip::LayerParams::mode)
        .def_ro("lif", &chip::LayerParams::lif);
    // The constants of cpp/include/neurosim/intmath.h (tests compare them with neurosim/intmath.py).
    m.def("limits", []() {
        namespace im = neurosim::intmath;
        nb::dict d;
        d["ACC_BITS"] = im::ACC_BITS;
        d["MEMBRANE_BITS"] = im::MEMBRANE_BITS;
        d["INT8_MIN"] = im::Q8_MIN;
        d["INT8_MAX"] = im::Q8_MAX;
        d["MAX_FAN_IN"] = im::MAX_FAN_IN;
        d["ACC_LO"] = im::ACC_LO;
        d["ACC_HI"] = im::ACC_HI;
        d["MEM_LO"] = im::MEM_LO;
        d["MEM_HI"] = im::MEM_HI;
        d["CURRENT_CLAMP"] = im::CURRENT_CLAMP;
        d["MIN_SHIFT"] = im::MIN_SHIFT;
        d["scalar_only"] = !NEUROSIM_X86;
        return d;
    });
    // Thin entry points to the intmath.h functions, one value per call (tests only).
    m.def("intmath_saturate", [](int64_t x, int bits) {
        require(bits >= 1 && bits <= 63, "bits must be in 1..63");
        return neurosim::intmath::saturate(x, bits);
    });
    m.def("intmath_sat32", [](int64_t x) { return neurosim::intmath::sat32(x); });
    m.def("intmath_rounding_shift_right", [](int64_t x, int s) {
        require(s > -32 && s < 63, "shift must be in -31..62");
        return neurosim::intmath::rounding_shift_right(x, s);
    });
    m.def("intmath_rshr_pos", [](int32_t x, int s) {
        require(s >= 1 && s <= 31, "shift must be in 1..31");
        return neurosim::intmath::rshr_pos(x, s);
    });
    m.def("intmath_requantize", [](int32_t acc, int shift, int bits) {
        require(shift >= neurosim::intmath::MIN_SHIFT, "shift must be >= -24");
        require(bits >= 1 && bits <= 32, "bits must be in 1..32");
        return neurosim::intmath::requantize(acc, shift, static_cast<int32_t>(neurosim::intmath::int_lo(bits)),
                                             static_cast<int32_t>(neurosim::intmath::int_hi(bits)));
    });
    m.def("intmath_leak", [](int32_t v, int32_t alpha, int32_t beta) {
        require(v >= neurosim::intmath::MEM_LO && v <= neurosim::intmath::MEM_HI, "v must be a 28-bit membrane");
        require(alpha >= 0 && alpha <= 256, "alpha must be in 0..256");
        require(beta >= neurosim::intmath::MEM_LO && beta <= neurosim::intmath::MEM_HI, "beta must be 28-bit");
        return neurosim::intmath::leak(v, alpha, beta);
    });
    m.def("cpu_features", []() {
        nb::dict d;
        d["avx2"] = chip::cpu_has_avx2();
        d["avx512vnni"] = chip::cpu_has_avx512vnni();
        d["avxvnni"] = chip::cpu_has_avxvnni();
        d["avx512vbmi"] = chip::cpu_has_avx512vbmi();
        d["amx"] = chip::cpu_has_amx();
        return d;
    });

    nb::class_<chip::PackedWeights>(m, "PackedWeights", "int8 weights (M, K) packed for one dense-MAC path")
        .def_prop_ro("path", [](const chip::PackedWeights& pw) { return static_cast<chip::Path>(pw.path); })
        .def_ro("m", &chip::PackedWeights::m)
        .def_ro("k", &chip::PackedWeights::k);

    m.def(
        "pack_weights",
        [](I8_2 w, chip::Path path) {
            return chip::pack_weights(w.data(), w.shape(0), w.shape(1), check_path(path));
        },
        "w"_a, "path"_a);

    m.def(
        "dense_mac",
        [](const chip::PackedWeights& pw, I8_2 x, std::optional<I32_1> bias, I32_2w out) {
            require(static_cast<int64_t>(x.shape(1)) == pw.k, "x must have K columns");
            require(static_cast<int64_t>(out.shape(0)) == static_cast<int64_t>(x.shape(0)) &&
                        static_cast<int64_t>(out.shape(1)) == pw.m, "out must be (N, M)");
            const int32_t* b = bias_ptr(bias, pw.m);
            nb::gil_scoped_release release;
            chip::dense_mac(pw, x.data(), x.shape(0), b, out.data());
        },
        "packed"_a, "x"_a, "bias"_a.none(), "out"_a);
    m.def(
        "dense_mac_vnni512_rows",  // the VNNI-512 row kernel on any M, for the benchmark's side-by-side timings
        [](const chip::PackedWeights& pw, I8_2 x, std::optional<I32_1> bias, I32_2w out) {
            require(pw.path == chip::AVXVNNI, "weights must be packed for avxvnni (the row layout)");
            require(chip::cpu_has_avx512vnni(), "this CPU has no AVX-512 VNNI");
            require(static_cast<int64_t>(x.shape(1)) == pw.k, "x must have K columns");
            require(static_cast<int64_t>(out.shape(0)) == static_cast<int64_t>(x.shape(0)) &&
                        static_cast<int64_t>(out.shape(1)) == pw.m, "out must be (N, M)");
            const int32_t* b = bias_ptr(bias, pw.m);
            nb::gil_scoped_release release;
            chip::dense_mac_vnni512_rows(pw, x.data(), x.shape(0), b, out.data());
        },
        "packed"_a, "x"_a, "bias"_a.none(), "out"_a);

    m.def(
        "spike_accumulate",
        [](I8_2 x, I8_2 wt, std::optional<I32_1> bias, I32_2w out, chip::Path path,
           std::optional<arr<int64_t, nb::ndim<1>>> row_active) {
            const int64_t n = x.shape(0), k = x.shape(1), mm = wt.shape(1);
            require(static_cast<int64_t>(wt.shape(0)) == k, "wt must be (K, M)");
            require(static_cast<int64_t>(out.shape(0)) == n && static_cast<int64_t>(out.shape(1)) == mm,
                    "out must be (N, M)");
            const int32_t* b = bias_ptr(bias, mm);
            require(!row_active || static_cast<int64_t>(row_active->shape(0)) == n, "row_active must have N entries");
            int64_t* ra = row_active ? row_active->data() : nullptr;
            check_path(path);
            nb::gil_scoped_release release;
            return chip::spike_accumulate(x.data(), n, k, wt.data(), mm, b, out.data(), path, ra);
        },
        "x"_a, "wt"_a, "bias"_a.none(), "out"_a, "path"_a, "row_active"_a.none() = nb::none());

    m.def(
        "conv_events",
        [](arr<const int8_t, nb::ndim<4>> x, arr<const int8_t, nb::ndim<4>> wt, std::optional<I32_1> bias,
           arr<int32_t, nb::ndim<3>> out, int stride, int pad, chip::Path path,
           std::optional<arr<int64_t, nb::ndim<2>>> row_active) {
            chip::ConvEventsArgs a{};
            a.x = x.data();
            a.steps = x.shape(0); a.c = x.shape(1); a.h = x.shape(2); a.w = x.shape(3);
            require(static_cast<int64_t>(wt.shape(0)) == a.c, "wt must be (C, kh, kw, M)");
            a.wt = wt.data();
            a.kh = wt.shape(1); a.kw = wt.shape(2); a.m = wt.shape(3);
            require(stride >= 1 && pad >= 0, "stride must be >= 1 and pad >= 0");
            a.stride = stride; a.pad = pad;
            a.ho = (a.h + 2 * pad - a.kh) / stride + 1;
            a.wo = (a.w + 2 * pad - a.kw) / stride + 1;
            require(a.ho >= 1 && a.wo >= 1, "kernel larger than the padded input");
            require(static_cast<int64_t>(out.shape(0)) == a.steps && static_cast<int64_t>(out.shape(1)) == a.ho * a.wo &&
                        static_cast<int64_t>(out.shape(2)) == a.m, "out must be (T, Ho*Wo, M)");
            a.bias = bias_ptr(bias, a.m);
            a.out = out.data();
            if (row_active) {
                require(static_cast<int64_t>(row_active->shape(0)) == a.steps &&
                            static_cast<int64_t>(row_active->shape(1)) == a.ho * a.wo, "row_active must be (T, Ho*Wo)");
                a.row_active = row_active->data();
            }
            check_path(path);
            nb::gil_scoped_release release;
            return chip::conv_events(a, path);
        },
        "x"_a, "wt"_a, "bias"_a.none(), "out"_a, "stride"_a, "pad"_a, "path"_a, "row_active"_a.none() = nb::none());

    m.def(
        "im2col",
        [](arr<const int8_t, nb::ndim<4>> x, int kh, int kw, int stride, int pad, arr<int8_t, nb::ndim<3>> out,
           std::optional<arr<int64_t, nb::ndim<2>>> row_nonzero) {
            const int64_t t = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
            require(kh >= 1 && kw >= 1 && stride >= 1 && pad >= 0, "bad kernel, stride or padding");
            const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
            require(ho >= 1 && wo >= 1, "kernel larger than the padded input");
            require(static_cast<int64_t>(out.shape(0)) == ho * wo && static_cast<int64_t>(out.shape(1)) == t &&
                        static_cast<int64_t>(out.shape(2)) == c * kh * kw, "out must be (Ho*Wo, T, C*kh*kw)");
            int64_t* nz = nullptr;
            if (row_nonzero) {
                require(static_cast<int64_t>(row_nonzero->shape(0)) == ho * wo &&
                            static_cast<int64_t>(row_nonzero->shape(1)) == t, "row_nonzero must be (Ho*Wo, T)");
                nz = row_nonzero->data();
            }
            nb::gil_scoped_release release;
            chip::im2col_pt(x.data(), t, c, h, w, kh, kw, stride, pad, out.data(), nz);
        },
        "x"_a, "kh"_a, "kw"_a, "stride"_a, "pad"_a, "out"_a, "row_nonzero"_a.none() = nb::none());

    m.def(
        "lif_step",
        [](I32_1 current, I32_1w v, I32_1w counter, I8_1w spikes, const chip::LIFParams& p, chip::Path path) {
            const size_t n = current.shape(0);
            require(v.shape(0) == n && counter.shape(0) == n && spikes.shape(0) == n, "arrays must match in size");
            check_path(path);
            nb::gil_scoped_release release;
            chip::lif_step(current.data(), v.data(), counter.data(), spikes.data(), n, p, path);
        },
        "current"_a, "v"_a, "counter"_a, "spikes"_a, "lif"_a, "path"_a);

    m.def(
        "lif_run",
        [](arr<const int32_t, nb::ndim<2>> current, I32_1w v, I32_1w counter, arr<int8_t, nb::ndim<2>> spikes,
           const chip::LIFParams& p, chip::Path path) {
            const size_t steps = current.shape(0), n = current.shape(1);
            require(v.shape(0) == n && counter.shape(0) == n && spikes.shape(0) == steps && spikes.shape(1) == n,
                    "arrays must match: current and spikes (T, n), v and counter (n,)");
            check_path(path);
            nb::gil_scoped_release release;
            chip::lif_run(current.data(), v.data(), counter.data(), spikes.data(), steps, n, p, path);
        },
        "current"_a, "v"_a, "counter"_a, "spikes"_a, "lif"_a, "path"_a);

    m.def(
        "output_stage",
        [](I32_1 acc, I8_1w out, int shift, chip::Soma act, std::optional<I8_1> lut, chip::Path path) {
            require(out.shape(0) == acc.shape(0), "out must match acc");
            require(act != chip::SOMA_LIF, "the output stage is an ANN soma (none, relu or lut)");
            require(act != chip::SOMA_LUT || (lut && lut->shape(0) == 256), "a lut activation needs a 256-entry lut");
            check_path(path);
            const int8_t* l = lut ? lut->data() : nullptr;
            nb::gil_scoped_release release;
            chip::output_stage(acc.data(), out.data(), acc.shape(0), shift, act, l, path);
        },
        "acc"_a, "out"_a, "shift"_a, "act"_a, "lut"_a.none(), "path"_a);

    m.def(
        "current_stage",
        [](I32_1 acc, I32_1w out, int shift, chip::Path path) {
            require(out.shape(0) == acc.shape(0), "out must match acc");
            check_path(path);
            nb::gil_scoped_release release;
            chip::current_stage(acc.data(), out.data(), acc.shape(0), shift, path);
        },
        "acc"_a, "out"_a, "shift"_a, "path"_a);

    m.def(
        "madd_probe",
        [](int64_t n) {
            require(chip::cpu_has_avx2(), "this CPU has no AVX2");
            nb::gil_scoped_release release;
            return chip::madd_probe(n);
        },
        "n"_a, "diagnostics: n rounds of 12 register-only vpmaddwd (for the peak in benchmarks)");

    m.def(
        "vnni512_probe",
        [](int64_t n) {
            require(chip::cpu_has_avx512vnni(), "this CPU has no AVX-512 VNNI");
            nb::gil_scoped_release release;
            return chip::vnni512_probe(n);
        },
        "n"_a, "diagnostics: n rounds of 12 register-only zmm vpdpbusd (for the peak in benchmarks)");

    m.def(
        "count_nonzero_groups",
        [](I8_2 values, arr<const int64_t, nb::ndim<1>> ptr, arr<const int32_t, nb::ndim<1>> idx,
           arr<int64_t, nb::ndim<1>> out, chip::Path path) {
            const int64_t groups = static_cast<int64_t>(ptr.shape(0)) - 1;
            require(groups >= 0 && static_cast<int64_t>(out.shape(0)) == groups, "out must have len(ptr) - 1 entries");
            const int64_t steps = values.shape(0), n = values.shape(1);
            for (int64_t g = 0; g < groups; ++g)
                require(ptr.data()[g] <= ptr.data()[g + 1], "ptr must be non-decreasing");
            require(groups == 0 || (ptr.data()[0] >= 0 && ptr.data()[groups] <= static_cast<int64_t>(idx.shape(0))),
                    "ptr out of range of idx");
            bool idx_ok = true;  // (one flag, not a check per entry: idx can be long)
            for (size_t e = 0; e < idx.shape(0); ++e) idx_ok &= idx.data()[e] >= 0 && idx.data()[e] < n;
            require(idx_ok, "idx out of range of values");
            check_path(path);
            nb::gil_scoped_release release;
            chip::count_nonzero_groups(values.data(), steps, n, ptr.data(), idx.data(), groups, out.data(), path);
        },
        "values"_a, "ptr"_a, "idx"_a, "out"_a, "path"_a);

    m.def(
        "conv_layer",
        [](arr<const int8_t, nb::ndim<4>> x, arr<const int8_t, nb::ndim<4>> weight, std::optional<I32_1> bias,
           const chip::LayerParams& lp, std::optional<I8_1> lut, arr<int8_t, nb::ndim<4>> out,
           std::optional<arr<int32_t, nb::ndim<3>>> in_count, std::optional<arr<int32_t, nb::ndim<3>>> out_count,
           chip::Path path, int threads) {
            const int64_t stride = lp.stride, pad = lp.pad;
            const int shift = lp.shift, soma = lp.soma, mode = lp.mode;
            chip::ConvLayerArgs a{};
            a.x = x.data();
            a.steps = x.shape(0); a.c = x.shape(1); a.h = x.shape(2); a.w = x.shape(3);
            require(static_cast<int64_t>(weight.shape(1)) == a.c, "weight must be (M, C, kh, kw) with the input's C");
            a.weight = weight.data();
            a.m = weight.shape(0); a.kh = weight.shape(2); a.kw = weight.shape(3);
            require(a.c * a.kh * a.kw <= neurosim::intmath::MAX_FAN_IN, "fan-in C*kh*kw must be at most 65536 (intmath MAX_FAN_IN)");
            require(stride >= 1 && pad >= 0, "stride must be >= 1 and pad >= 0");
            a.stride = stride; a.pad = pad;
            a.ho = (a.h + 2 * pad - a.kh) / stride + 1;
            a.wo = (a.w + 2 * pad - a.kw) / stride + 1;
            require(a.h + 2 * pad >= a.kh && a.w + 2 * pad >= a.kw, "kernel larger than the padded input");
            require(static_cast<int64_t>(out.shape(0)) == a.steps && static_cast<int64_t>(out.shape(1)) == a.m &&
                        static_cast<int64_t>(out.shape(2)) == a.ho && static_cast<int64_t>(out.shape(3)) == a.wo,
                    "out must be (T, M, Ho, Wo)");
            a.bias = bias_ptr(bias, a.m);
            require(shift >= -24, "shift must be >= -24");
            require(soma >= 0 && soma <= 3, "soma must be 0 (none), 1 (relu), 2 (lut) or 3 (lif)");
            a.shift = shift; a.soma = soma;
            require(soma != 2 || (lut && lut->shape(0) == 256), "a lut activation needs a 256-entry lut");
            a.lut = lut ? lut->data() : nullptr;
            a.lif = lp.lif;
            a.out = out.data();
            if (in_count) {
                require(static_cast<int64_t>(in_count->shape(0)) == a.c && static_cast<int64_t>(in_count->shape(1)) == a.h &&
                            static_cast<int64_t>(in_count->shape(2)) == a.w, "in_count must be (C, H, W)");
                a.in_count = in_count->data();
            }
            if (out_count) {
                require(static_cast<int64_t>(out_count->shape(0)) == a.m && static_cast<int64_t>(out_count->shape(1)) == a.ho &&
                            static_cast<int64_t>(out_count->shape(2)) == a.wo, "out_count must be (M, Ho, Wo)");
                a.out_count = out_count->data();
            }
            require(mode >= -1 && mode <= 3, "mode must be -1 (auto), 0 (events), 1 (plane), 2 (lut) or 3 (gemm)");
            a.mode = mode;
            check_path(path);
            require(threads >= 1, "threads must be >= 1");
            nb::gil_scoped_release release;
            return chip::conv_layer_threads(a, path, threads);
        },
        "x"_a, "weight"_a, "bias"_a.none(), "params"_a, "lut"_a.none(), "out"_a, "in_count"_a.none(),
        "out_count"_a.none(), "path"_a, "threads"_a = 1);

    m.def(
        "snn_chain",
        [](arr<const int8_t, nb::ndim<4>> x, std::vector<arr<const int8_t, nb::ndim<4>>> weights,
           std::vector<std::optional<I32_1>> biases, std::vector<chip::LayerParams> params, std::vector<int> pools,
           std::optional<I8_1> lut, arr<int8_t, nb::ndim<4>> out,
           std::vector<std::optional<arr<int32_t, nb::ndim<3>>>> in_counts,
           std::vector<std::optional<arr<int32_t, nb::ndim<3>>>> out_counts, chip::Path path, int threads,
           int block_steps, chip::FirstStage first, chip::ChainTables* tables) {
            std::vector<chip::ChainStage> st =
                chain_stages(x, weights, biases, params, pools, lut, out, in_counts, out_counts, path, threads);
            require(block_steps >= 0, "block_steps must be >= 0");
            nb::gil_scoped_release release;
            return chip::snn_chain(st.data(), static_cast<int64_t>(st.size()), path, threads, block_steps, first,
                                   tables);
        },
        "x"_a, "weights"_a, "biases"_a, "params"_a, "pools"_a, "lut"_a.none(), "out"_a, "in_counts"_a, "out_counts"_a,
        "path"_a, "threads"_a = 1, "block_steps"_a = 0, "first_stage"_a = chip::FIRST_AUTO,
        "tables"_a.none() = nullptr);

    nb::class_<chip::ChainTables>(m, "ChainTables",
                                  "a chain's tables built from its weights alone, kept across calls (kernels.h)")
        .def(nb::init<int64_t>(), "stages"_a);

    nb::class_<chip::ChainJob>(m, "ChainJob", "an SNN chain running beside the caller (snn_chain_start)")
        .def("join", &chip::ChainJob::join, nb::call_guard<nb::gil_scoped_release>(),
             "work on the chain until it is done; 0, or -1 when it declined (snn_chain's result)");

    m.def(
        "pool_wake", [](int workers) { neurosim::ThreadPool::instance().wake(workers); }, "workers"_a,
        "wake up to `workers` threads of the kernel pool (they spin ~100 us, ready for the next threaded call)");

    m.def(
        "snn_chain_start",
        [](arr<const int8_t, nb::ndim<4>> x, std::vector<arr<const int8_t, nb::ndim<4>>> weights,
           std::vector<std::optional<I32_1>> biases, std::vector<chip::LayerParams> params, std::vector<int> pools,
           std::optional<I8_1> lut, arr<int8_t, nb::ndim<4>> out,
           std::vector<std::optional<arr<int32_t, nb::ndim<3>>>> in_counts,
           std::vector<std::optional<arr<int32_t, nb::ndim<3>>>> out_counts, chip::Path path, int threads,
           int helpers, chip::FirstStage first, chip::ChainTables* tables) {
            // snn_chain as a job: `helpers` threads start on it now, the caller joins with join() (it must
            // keep every array alive until then)
            std::vector<chip::ChainStage> st =
                chain_stages(x, weights, biases, params, pools, lut, out, in_counts, out_counts, path, threads);
            require(helpers >= 0, "helpers must be >= 0");
            auto job = std::make_unique<chip::ChainJob>(st.data(), static_cast<int64_t>(st.size()), path, threads, 0,
                                                        first, tables);
            job->start(helpers);
            return job.release();
        },
        "x"_a, "weights"_a, "biases"_a, "params"_a, "pools"_a, "lut"_a.none(), "out"_a, "in_counts"_a, "out_counts"_a,
        "path"_a, "threads"_a, "helpers"_a, "first_stage"_a = chip::FIRST_AUTO, "tables"_a.none() = nullptr,
        nb::rv_policy::take_ownership);

    nb::class_<chip::Tally>(m, "Tally",
                            "a compiled plan's counting after a run: SNN tiles' active inputs and routes' packets "
                            "from the count arena (kernels.h)")
        .def(nb::init<int64_t, int64_t, int64_t>(), "arena_size"_a, "tiles"_a, "routes"_a)
        .def(
            "add_windows",
            [](chip::Tally& t, int64_t offset, int64_t c, int64_t h, int64_t w, int64_t c0, int64_t c1, int64_t kh,
               int64_t kw, int64_t stride, int64_t pad, std::vector<int64_t> starts, std::vector<int64_t> stops,
               std::vector<int64_t> tiles) {
                t.add_windows({offset, c, h, w, c0, c1, kh, kw, stride, pad, std::move(starts), std::move(stops),
                               std::move(tiles)});
            },
            "offset"_a, "c"_a, "h"_a, "w"_a, "c0"_a, "c1"_a, "kh"_a, "kw"_a, "stride"_a, "pad"_a, "starts"_a,
            "stops"_a, "tiles"_a)
        .def("set_routes", &chip::Tally::set_routes, "ptr"_a, "starts"_a, "stops"_a, "route"_a, "value_of"_a,
             "dense_per_step"_a, "values"_a)
        .def(
            "run",
            [](const chip::Tally& t, arr<const int32_t, nb::ndim<1>> arena, arr<const int64_t, nb::ndim<1>> steps,
               arr<int64_t, nb::ndim<1>> active, arr<int64_t, nb::ndim<1>> packets, int threads) {
                require(static_cast<int64_t>(arena.shape(0)) == t.arena_size(), "arena must have arena_size entries");
                require(t.values() == 0 || static_cast<int64_t>(steps.shape(0)) == t.values(),
                        "steps must have one entry per route value");
                require(static_cast<int64_t>(active.shape(0)) == t.tiles(), "active must have one entry per tile");
                require(static_cast<int64_t>(packets.shape(0)) == t.routes(), "packets must have one entry per route");
                require(threads >= 1, "threads must be >= 1");
                nb::gil_scoped_release release;
                t.run(arena.data(), steps.data(), active.data(), packets.data(), threads);
            },
            "arena"_a, "steps"_a, "active"_a, "packets"_a, "threads"_a = 1,
            "active[tile] += its active inputs; packets[route] = its packets (the value routes'; on two threads "
            "where threads > 1)");

    m.def(
        "window_range_sums",
        [](arr<const int32_t, nb::ndim<3>> count, int c0, int c1, int kh, int kw, int stride, int pad,
           arr<const int64_t, nb::ndim<1>> starts, arr<const int64_t, nb::ndim<1>> stops, arr<int64_t, nb::ndim<1>> out) {
            // out[i] = sum of window_counts(...)[starts[i]:stops[i]] (a core's active inputs: the
            // window sums over its range of output positions)
            const int64_t c = count.shape(0), h = count.shape(1), w = count.shape(2);
            require(0 <= c0 && c0 <= c1 && c1 <= c, "channel range out of bounds");
            require(kh >= 1 && kw >= 1 && stride >= 1 && pad >= 0 && h + 2 * pad >= kh && w + 2 * pad >= kw,
                    "bad kernel, stride or padding");
            const int64_t p = ((h + 2 * pad - kh) / stride + 1) * ((w + 2 * pad - kw) / stride + 1);
            const int64_t n = static_cast<int64_t>(out.shape(0));
            require(static_cast<int64_t>(starts.shape(0)) == n && static_cast<int64_t>(stops.shape(0)) == n,
                    "starts, stops and out must have the same length");
            const int64_t *a = starts.data(), *b = stops.data();
            bool ok = true;
            for (int64_t i = 0; i < n; ++i) ok &= a[i] >= 0 && a[i] <= b[i] && b[i] <= p;
            require(ok, "ranges must satisfy 0 <= start <= stop <= Ho*Wo");
            nb::gil_scoped_release release;
            std::vector<int64_t> pre(p + 1, 0);
            chip::window_counts(count.data(), c, h, w, c0, c1, kh, kw, stride, pad, pre.data() + 1);
            for (int64_t i = 0; i < p; ++i) pre[i + 1] += pre[i];
            for (int64_t i = 0; i < n; ++i) out.data()[i] = pre[b[i]] - pre[a[i]];
        },
        "count"_a, "c0"_a, "c1"_a, "kh"_a, "kw"_a, "stride"_a, "pad"_a, "starts"_a, "stops"_a, "out"_a);

    m.def(
        "window_counts",
        [](arr<const int32_t, nb::ndim<3>> count, int c0, int c1, int kh, int kw, int stride, int pad,
           arr<int64_t, nb::ndim<1>> out) {
            const int64_t c = count.shape(0), h = count.shape(1), w = count.shape(2);
            require(0 <= c0 && c0 <= c1 && c1 <= c, "channel range out of bounds");
            require(kh >= 1 && kw >= 1 && stride >= 1 && pad >= 0 && h + 2 * pad >= kh && w + 2 * pad >= kw,
                    "bad kernel, stride or padding");
            const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (w + 2 * pad - kw) / stride + 1;
            require(static_cast<int64_t>(out.shape(0)) == ho * wo, "out must have Ho*Wo entries");
            nb::gil_scoped_release release;
            chip::window_counts(count.data(), c, h, w, c0, c1, kh, kw, stride, pad, out.data());
        },
        "count"_a, "c0"_a, "c1"_a, "kh"_a, "kw"_a, "stride"_a, "pad"_a, "out"_a);

    m.def(
        "group_sums",
        [](arr<const int32_t, nb::ndim<1>> count, arr<const int64_t, nb::ndim<1>> ptr, arr<const int32_t, nb::ndim<1>> idx,
           arr<int64_t, nb::ndim<1>> out) {
            const int64_t g = static_cast<int64_t>(out.shape(0)), n = static_cast<int64_t>(count.shape(0));
            require(static_cast<int64_t>(ptr.shape(0)) == g + 1, "ptr must have one entry more than out");
            const int64_t* p = ptr.data();
            require(g == 0 || (p[0] >= 0 && p[g] <= static_cast<int64_t>(idx.shape(0))), "ptr out of range");
            bool ok = true;  // (one require per check: it builds its message string)
            for (int64_t i = 0; i < g; ++i) ok &= p[i] <= p[i + 1];
            require(ok, "ptr must be non-decreasing");
            const int32_t* ix = idx.data();
            for (int64_t e = g ? p[0] : 0; e < (g ? p[g] : 0); ++e) ok &= ix[e] >= 0 && ix[e] < n;
            require(ok, "idx out of range");
            nb::gil_scoped_release release;
            chip::group_sums(count.data(), n, p, ix, g, out.data());
        },
        "count"_a, "ptr"_a, "idx"_a, "out"_a);

    m.def(
        "range_sums",
        [](arr<const int32_t, nb::ndim<1>> count, arr<const int64_t, nb::ndim<1>> ptr, arr<const int64_t, nb::ndim<1>> starts,
           arr<const int64_t, nb::ndim<1>> stops, arr<int64_t, nb::ndim<1>> out) {
            const int64_t g = static_cast<int64_t>(out.shape(0)), n = static_cast<int64_t>(count.shape(0));
            const int64_t runs = static_cast<int64_t>(starts.shape(0));
            require(static_cast<int64_t>(ptr.shape(0)) == g + 1, "ptr must have one entry more than out");
            require(static_cast<int64_t>(stops.shape(0)) == runs, "starts and stops must have the same length");
            const int64_t* p = ptr.data();
            require(g == 0 || (p[0] >= 0 && p[g] <= runs), "ptr out of range");
            bool ok = true;  // (one require per check: it builds its message string)
            for (int64_t i = 0; i < g; ++i) ok &= p[i] <= p[i + 1];
            require(ok, "ptr must be non-decreasing");
            const int64_t *a = starts.data(), *b = stops.data();
            for (int64_t r = 0; r < runs; ++r) ok &= a[r] >= 0 && a[r] <= b[r] && b[r] <= n;
            require(ok, "runs must satisfy 0 <= start <= stop <= len(count)");
            nb::gil_scoped_release release;
            chip::range_sums(count.data(), n, p, a, b, g, out.data());
        },
        "count"_a, "ptr"_a, "starts"_a, "stops"_a, "out"_a);

    m.def(
        "max_pool",
        [](arr<const int8_t, nb::ndim<3>> x, int k, arr<int8_t, nb::ndim<3>> out, chip::Path path) {
            require(k >= 1, "the pooling window must be at least 1");
            require(out.shape(0) == x.shape(0) && static_cast<int64_t>(out.shape(1)) == static_cast<int64_t>(x.shape(1)) / k &&
                        static_cast<int64_t>(out.shape(2)) == static_cast<int64_t>(x.shape(2)) / k,
                    "out must be (planes, H / k, W / k)");
            check_path(path);
            nb::gil_scoped_release release;
            chip::max_pool(x.data(), x.shape(0), x.shape(1), x.shape(2), k, out.data(), path);
        },
        "x"_a, "k"_a, "out"_a, "path"_a);

    m.def(
        "count_nonzero_cols",
        [](I8_2 values, arr<int32_t, nb::ndim<1>> out, chip::Path path) {
            require(out.shape(0) == values.shape(1), "out must have one entry per column");
            check_path(path);
            nb::gil_scoped_release release;
            chip::count_nonzero_cols(values.data(), values.shape(0), values.shape(1), out.data(), path);
        },
        "values"_a, "out"_a, "path"_a);
}
