// nanobind module chip_models._kernels (placeholder until the kernels land).
#include <nanobind/nanobind.h>
NB_MODULE(_kernels, m) { m.def("abi_version", []() { return 1; }); }
