"""chip_models: neuromorphic chip models of neurosim (see DESIGN.md and README.md).

Chip configurations (:mod:`.config`), network input (:mod:`.network`: integer network folders,
NIR graphs), mapping onto cores (:mod:`.mapper`), C++ int8 kernels (:mod:`.kernels`), a bit-exact
core-by-core simulation (:mod:`.simulate`), the cycle/energy model (:mod:`.timing`), reports
(:mod:`.report`), a DashNet-like reference network (:mod:`.reference_net`) and the
``neurosim chip`` commands (:mod:`.cli`).
"""
