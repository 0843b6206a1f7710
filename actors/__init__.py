"""vlm-sweep's model side: a loaded model captioning batches, importable with only torch + transformers.

No Ray, MLflow or `sweep` at import. `contract` holds the typed objects between the driver and the hosts,
`families/` one small module per model family (`registry` names them), `tiny/` the builders of the
`tiny:<family>` random-weight models, `hf` / `vllm_backend` / `custom` the backends, `model_host` the host.
"""
