"""Commands on a model file (artifact, training checkpoint or raw weights): pack, fit, score, inspect_artifact,
sample; model_file.py reads any of them."""
