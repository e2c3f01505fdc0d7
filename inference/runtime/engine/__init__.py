"""The inference engine: continuous batching of gpt-oss generations over llama.cpp (no Django).

engine.py: `Engine`, `Generation` (loads llama.cpp); llama.py: the llama.cpp calls; settings.py:
`EngineSettings`, `SamplingParams` and the one builder of engine settings; errors.py. This file imports
nothing, so that a web process can read the settings and errors without loading llama.cpp.
"""
