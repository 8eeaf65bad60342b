"""hybrid: a DashNet-style hybrid ANN–SNN tracker (see README.md).

An ANN on APS frames (``ann``), an SNN of STBP neurons on event bins (``snn_branch``), a
template/correlation head (``template``), spike attention (``attention``) and a temporal
complementary filter (``tcf``) make ``model.DashNet`` (variants ``ann_only``, ``snn_only``,
``no_tcf``, ``no_attention``, ``full``). ``train``, ``tune`` (the TCF crossover fitted by
closed-loop tracking on the training split), ``track``, ``evaluate`` (OTB metrics of
``metrics``), ``export`` (to ``neurosim.intnet``) and ``cli`` (``neurosim train|eval|track|export``)
work on datasets of ``benchmarks_data``; ``demo`` is the ``neurosim demo`` stage.
"""
