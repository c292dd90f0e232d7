"""Robustness and modality probes of a model version (issue 14; docs/probes.md).

``corruptions`` (ImageNet-C style, cached on disk), ``text`` (meaning-preserving
perturbations and persuasion prefixes), ``figures`` (pure numpy: flip rate, CE, mCE,
Rel. mCE, persuasion sensitivity, image reliance), ``runner`` (export -> scores ->
``ProbeResult``), ``report`` (tables and the severity curve rows), ``gate`` (the promotion gate's option).
"""
