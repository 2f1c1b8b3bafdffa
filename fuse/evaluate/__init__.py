"""Prediction and evaluation: prediction sources, ``predict_to_folder``, the evaluation protocols
(``protocols``), their metrics and published rows, and visualization."""
