"""Serving past one process: `llama.serve.ray` runs replicas of `python -m llama serve` on Ray Serve
behind one OpenAI endpoint (`pip install 'llama-py[ray]'`, `python -m llama serve --ray`).

`affinity` (which replica a request prefers) and `child` (one server process per replica) need
nothing beyond the standard library; only `llama.serve.ray` imports Ray."""
