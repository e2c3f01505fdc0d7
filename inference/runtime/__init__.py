"""What the GPU worker runs, in plain Python (no Django): the engine over llama.cpp, harmony's prompt format,
the model's vocabulary, and the model files (names, paths, downloads). The web side imports only the parts
that load no llama.cpp (engine settings, catalog); import-linter checks both."""
