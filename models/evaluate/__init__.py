"""Evaluations of a trained network on a split of its data, pure torch: the report (what it gets wrong, how
well calibrated it is), robustness under FGSM and PGD, and attributions (saliency, integrated gradients).

`models.evaluate.params` is torch-free (the API validates requests with it); `models.evaluate.run` runs one.
"""
