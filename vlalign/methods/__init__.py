"""The methods: arrays in, numbers out (kernels, CKA, measures, matching, retrieval, baselines, classification, concepts, attribution math). No I/O."""
